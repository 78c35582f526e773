"""Dynamic batching through the app: many concurrent requests, each answered in its own input order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app.core.registry import Registry
from tests.conftest import make_sentences
from tests.integration.conftest import serve


def test_concurrent_requests_are_batched_and_answered_in_order(tiny_artifact: Path) -> None:
    texts = [text for text, _ in make_sentences(96, seed=11)]
    bodies = [{"texts": texts[i:i + 1 + i % 3]} for i in range(48)]  # 1, 2 or 3 texts each

    def calls() -> float:
        return REGISTRY.get_sample_value("app_batch_size_count", {"model": "tiny-sentiment"}) or 0.0

    with serve(tiny_artifact.parent, batch_wait_ms=20, max_batch_size=16) as client:
        registry: Registry = client.app.state.service.registry  # type: ignore[attr-defined]
        _, backend = registry.get("tiny-sentiment", "text-classification")
        before = calls()
        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(lambda body: client.post("/v1/sentiment", json=body), bodies))
        model_calls = calls() - before
        distinct = {round(p.scores["positive"], 6) for p in backend.classify(texts, "chunks")}
        assert len(distinct) > 10  # so that a result routed to the wrong text would show
        for body, response in zip(bodies, responses, strict=True):
            assert response.status_code == 200, response.text
            got = response.json()["results"]
            expected = backend.classify(body["texts"], "chunks")
            assert [r["label"] for r in got] == [p.label for p in expected]
            assert [r["scores"]["positive"] for r in got] == pytest.approx(
                [p.scores["positive"] for p in expected], abs=1e-6)
    assert 0 < model_calls < len(bodies)
