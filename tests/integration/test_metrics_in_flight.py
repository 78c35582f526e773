"""In-flight work is observable: under load, /metrics shows requests in flight per route, queue depth per model
and admission loop, active generation streams and time queued; once the load is gone every gauge is back to 0."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import serve
from tests.lm_helpers import linked_models_dir


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_gauges_move_under_load_and_return_to_zero(tiny_artifact: Path, tiny_lm_artifact: Path,
                                                   tmp_path: Path) -> None:
    models = linked_models_dir(tmp_path / "models", tiny_artifact, tiny_lm_artifact)
    with serve(models, max_concurrency=1, batch_wait_ms=0, max_batch_size=2, max_new_tokens=40) as client:
        registry = client.app.state.service.registry  # type: ignore[attr-defined]
        classifier, generator = registry.entries["tiny-sentiment"].model, registry.entries["tiny-gpt2"].model
        gate = threading.Event()
        predict, decode = classifier.predict, generator._decode
        classifier.predict = lambda texts: gate.wait(30) and predict(texts)
        generator._decode = lambda tokens, cache: gate.wait(30) and decode(tokens, cache)
        before = scrape(client)
        with ThreadPoolExecutor(10) as pool:
            texts = [pool.submit(client.post, "/v1/sentiment", json={"text": f"good film {i}"}) for i in range(6)]
            streams = [pool.submit(client.post, "/v1/generate", json={"prompt": "The sea", "max_new_tokens": 4,
                                                                      "model": "tiny-gpt2"}) for _ in range(2)]
            attention = pool.submit(client.post, "/v1/attention", json={"text": "good", "model": "tiny-sentiment"})
            wait_for(lambda: value(scrape(client), "app_requests_in_flight", route="/v1/sentiment") == 6)
            loaded = scrape(client)

            def generations(samples: dict[Any, float]) -> tuple[float, float]:
                return (value(samples, "app_generation_streams_active", model="tiny-gpt2"),
                        value(samples, "app_queue_depth", model="tiny-gpt2", loop="stream"))

            wait_for(lambda: sum(generations(scrape(client))) == 2)  # decoding, or waiting behind the held step
            assert generations(scrape(client))[0] >= 1
            assert value(loaded, "app_requests_in_flight", route="/v1/generate") == 2
            assert value(loaded, "app_requests_in_flight", route="/v1/attention") == 1
            assert value(loaded, "app_queue_depth", model="tiny-sentiment", loop="batch") >= 2
            assert value(loaded, "app_queue_depth", model="tiny-sentiment", loop="single") == 1  # attention waits
            gate.set()
            assert all(f.result().status_code == 200 for f in [*texts, *streams, attention])
        after = scrape(client)
        for name, labels in [("app_requests_in_flight", {"route": "/v1/sentiment"}),
                             ("app_requests_in_flight", {"route": "/v1/generate"}),
                             ("app_requests_in_flight", {"route": "/v1/attention"}),
                             ("app_queue_depth", {"model": "tiny-sentiment", "loop": "batch"}),
                             ("app_queue_depth", {"model": "tiny-sentiment", "loop": "single"}),
                             ("app_queue_depth", {"model": "tiny-gpt2", "loop": "stream"}),
                             ("app_generation_streams_active", {"model": "tiny-gpt2"})]:
            assert value(after, name, **labels) == 0, (name, labels)
        waited = {loop: value(after, "app_queue_wait_seconds_count", model=model, loop=loop) - value(
            before, "app_queue_wait_seconds_count", model=model, loop=loop)
            for model, loop in [("tiny-sentiment", "batch"), ("tiny-sentiment", "single"), ("tiny-gpt2", "stream")]}
        assert waited == {"batch": 6, "single": 1, "stream": 2}
        batches = value(after, "app_batch_size_count", model="tiny-sentiment") - value(
            before, "app_batch_size_count", model="tiny-sentiment")
        assert 3 <= batches < 6  # at most 2 texts per call (max_batch_size): fewer calls than requests
