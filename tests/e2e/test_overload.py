"""Far more concurrent requests than a real server admits: each gets 200, or 429 with Retry-After, or 503,
at once rather than after an unbounded wait; afterwards the server answers normally."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

StartServer = Callable[..., AbstractContextManager[Any]]
REQUESTS = 200
OVERALL_TIMEOUT_S = 120


async def burst(url: str) -> list[httpx.Response]:
    """REQUESTS concurrent requests, alternately generation and classification, one connection each."""
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        def one(i: int) -> Any:
            if i % 2:
                return client.post("/v1/sentiment", json={"texts": ["a good film", "a dull plot"]})
            return client.post("/v1/generate", json={"prompt": "Call me Ishmael.", "max_new_tokens": 40})

        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(REQUESTS))), OVERALL_TIMEOUT_S)


def test_overload_sheds_load_fast_and_recovers(tiny_artifact: Path, tiny_lm_artifact: Path, tmp_path: Path,
                                              start_server: StartServer) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for artifact in (tiny_artifact, tiny_lm_artifact):
        (models / artifact.name).symlink_to(artifact, target_is_directory=True)
    with start_server(models, max_concurrency="1", max_queue="4") as server:
        responses = asyncio.run(burst(server.url))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 429, 503}, sorted(set(statuses))
        assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
        for response in responses:
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert response.json()["code"] == "overloaded"

        started = time.monotonic()
        after = [httpx.post(f"{server.url}/v1/sentiment", json={"text": "a good film"}, timeout=10),
                 httpx.post(f"{server.url}/v1/generate", json={"prompt": "Call me", "max_new_tokens": 8}, timeout=10)]
        assert [r.status_code for r in after] == [200, 200], [r.text for r in after]
        assert time.monotonic() - started < 5
        assert httpx.get(f"{server.url}/health/ready").status_code == 200
