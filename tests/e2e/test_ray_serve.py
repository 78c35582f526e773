"""The service as a Ray Serve application (app/serve_ray.py, deploy/ray/serve.yaml) on a local Ray instance bound to
127.0.0.1: two replicas of the tiny classifier share 100 concurrent requests, and a killed replica is replaced while
the other keeps answering."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ray = pytest.importorskip("ray", reason="ray is an optional extra: pip install -e '.[ray]'")
from ray import serve  # noqa: E402

from app.serve_ray import CONFIG, application, load_config, override  # noqa: E402
from tests.e2e.conftest import free_port  # noqa: E402

pytestmark = pytest.mark.slow

APP = "transformer-stack"
BODY = {"texts": ["a good film", "a dull and boring plot"]}
REPLICA_TIMEOUT_S = 240  # a replica starts in seconds on idle CI cores; with a training job beside CI 90 s were too few


@pytest.fixture(scope="module")
def ray_serve(tiny_artifact: Path) -> Iterator[str]:
    """Ray (2 CPUs, no dashboard) and the Serve config's application with 2 replicas: the proxy's base URL."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="test-ray-serve")
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = override(load_config(), replicas=2, env={"APP_MODELS_DIR": str(tiny_artifact.parent)})
        serve.run(application(config), name=APP, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


async def burst(url: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        return await asyncio.gather(*[client.post("/v1/sentiment", json=BODY) for _ in range(n)])


async def readiness_of_each_replica(url: str, n: int = 16, rounds: int = 5) -> dict[str, Any]:
    """/health/ready's body by replica, from rounds of n concurrent probes: one probe at a time landed on the same
    replica 40 times in a row once (Ray's router is free to keep choosing an idle replica for sequential requests)."""
    seen: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=httpx.Limits(max_connections=n)) as client:
        for _ in range(rounds):
            for ready in await asyncio.gather(*[client.get("/health/ready") for _ in range(n)]):
                assert ready.status_code == 200, ready.text
                seen[ready.headers["x-replica"]] = ready.json()
            if len(seen) == 2:
                break
    return seen


def test_the_config_is_a_valid_serve_config() -> None:
    from ray.serve.schema import ServeDeploySchema

    parsed = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    app = parsed.applications[0]
    assert app.import_path == "app.serve_ray:build" and app.route_prefix == "/"
    scaled = override(load_config(), min_replicas=1, max_replicas=4, target_ongoing=8, num_cpus=2)
    deployment = ServeDeploySchema.model_validate(scaled).applications[0].deployments[0]
    assert deployment.num_replicas == "auto" and deployment.autoscaling_config["max_replicas"] == 4
    assert deployment.ray_actor_options.num_cpus == 2
    variables = scaled["applications"][0]["runtime_env"]["env_vars"]
    assert variables["APP_THREADS"] == "2"
    assert Path(variables["APP_MODELS_DIR"]).is_absolute()  # replicas do not run in the caller's folder
    original = yaml.safe_load(CONFIG.read_text())["applications"][0]["runtime_env"]["env_vars"]
    assert original["APP_MODELS_DIR"] == "models"  # the file itself is left as it is


def test_replicas_share_concurrent_requests_and_each_loaded_the_models(ray_serve: str) -> None:
    responses = asyncio.run(burst(ray_serve, 100))
    assert Counter(r.status_code for r in responses) == {200: 100}
    assert all(r.json()["results"][0]["label"] in {"negative", "positive"} for r in responses)
    served = Counter(r.headers["x-replica"] for r in responses)
    assert len(served) == 2, served  # both replicas answered
    # each replica ran the app's lifespan: its own registry is loaded and warm
    seen = asyncio.run(readiness_of_each_replica(ray_serve))
    assert set(seen) == set(served)
    assert all(body["models"] == {"tiny-sentiment": "ready"} for body in seen.values()), seen


def test_a_killed_replica_is_replaced_while_the_other_answers(ray_serve: str) -> None:
    before = {r.headers["x-replica"] for r in asyncio.run(burst(ray_serve, 40))}
    assert len(before) == 2
    victim = sorted(before)[0]
    handle = ray.get_actor(f"SERVE_REPLICA::{APP}#{victim}", namespace="serve")
    statuses, after, concurrency = asyncio.run(load_while_killing(ray_serve, handle, before))
    failed = {status: n for status, n in statuses.items() if status != 200}
    print(f"statuses during the kill: {dict(statuses)}; replicas after: {sorted(after)}")
    assert statuses[200] > 50
    # only requests that were on the killed replica may fail: at most one per client, answered with a 5xx by Ray's
    # proxy or cut off with the replica's connection (-1: a transport error)
    assert sum(failed.values()) <= concurrency, failed
    assert all(status in {500, 502, 503, -1} for status in failed), failed
    assert victim not in after and len(after - before) == 1, (before, after)  # Ray started a new replica


async def load_while_killing(url: str, handle: Any, before: set[str], concurrency: int = 8,
                             ) -> tuple[Counter[int], set[str], int]:
    """``concurrency`` clients in closed loops; the replica is killed once they run; they stop when a new replica
    has answered (or after REPLICA_TIMEOUT_S). Returns the statuses, the replicas answering at the end, the
    number of clients."""
    statuses: Counter[int] = Counter()
    latest: dict[str, float] = {}
    stop = asyncio.Event()
    killed_at = 0.0

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                response = await client.post("/v1/sentiment", json=BODY)
            except httpx.TransportError:
                statuses[-1] += 1
                continue
            statuses[response.status_code] += 1
            replica = response.headers.get("x-replica")
            if replica and response.status_code == 200:
                latest[replica] = time.monotonic()
                if killed_at and replica not in before:
                    stop.set()

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        loops = [asyncio.create_task(client_loop(client)) for _ in range(concurrency)]
        await asyncio.sleep(1.0)
        ray.kill(handle, no_restart=True)  # Serve's controller notices and starts a replacement
        killed_at = time.monotonic()
        try:
            await asyncio.wait_for(stop.wait(), REPLICA_TIMEOUT_S)
        finally:
            stop.set()
            await asyncio.gather(*loops)
    recent = {replica for replica, at in latest.items() if at > killed_at + 0.5}
    return statuses, recent, concurrency
