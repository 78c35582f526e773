"""POST /v1/embeddings on both runtimes: OpenAI's shape, float and base64, unit vectors equal to a transformers
reference, runtimes agree, usage counts the tokenizer's tokens, batched with other requests, errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from transformers import AutoModel, AutoTokenizer

from tests.integration.conftest import serve

TEXTS = ["the movie was very good .", "a dull and boring plot", "it was fun"]


@pytest.fixture(scope="module", params=["onnx", "torch"])
def client(request: pytest.FixtureRequest, tiny_embedding_artifact: Path,
           tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    models = tmp_path_factory.mktemp("embedding-models")
    for artifact in (tiny_embedding_artifact, tiny_artifact):
        (models / artifact.name).symlink_to(artifact, target_is_directory=True)
    with serve(models, runtime=request.param) as c:
        yield c


def reference(folder: Path, texts: list[str]) -> np.ndarray:
    """sentence-transformers' recipe with plain transformers: mean of the token states over the mask, L2 norm."""
    tokenizer = AutoTokenizer.from_pretrained(folder / "hf")
    model = AutoModel.from_pretrained(folder / "hf").eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (states * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def vectors(body: dict) -> np.ndarray:  # type: ignore[type-arg]
    return np.array([d["embedding"] for d in body["data"]], dtype=np.float32)


def test_embeddings_match_the_reference(client: TestClient, tiny_embedding_artifact: Path) -> None:
    response = client.post("/v1/embeddings", json={"input": TEXTS, "model": "tiny-embed"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == "tiny-embed"
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", i) for i in range(3)]
    got = vectors(body)
    np.testing.assert_allclose(got, reference(tiny_embedding_artifact, TEXTS), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    tokenizer = AutoTokenizer.from_pretrained(tiny_embedding_artifact / "hf")
    tokens = sum(len(tokenizer(t)["input_ids"]) for t in TEXTS)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_base64_is_the_float32_bytes_of_the_same_vectors(client: TestClient) -> None:
    floats = vectors(client.post("/v1/embeddings", json={"input": TEXTS}).json())
    encoded = client.post("/v1/embeddings", json={"input": TEXTS, "encoding_format": "base64"}).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in encoded["data"]])
    np.testing.assert_allclose(decoded, floats, atol=1e-6)
    one = client.post("/v1/embeddings", json={"input": TEXTS[1]}).json()
    np.testing.assert_allclose(vectors(one)[0], floats[1], atol=1e-5)


def test_concurrent_requests_share_batched_calls(client: TestClient) -> None:
    calls = REGISTRY.get_sample_value("app_batch_size_count", {"model": "tiny-embed"}) or 0.0
    texts = [f"the film was very good {'and fun ' * i}." for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: client.post("/v1/embeddings", json={"input": t}), texts))
    assert all(a.status_code == 200 for a in answers)
    made = (REGISTRY.get_sample_value("app_batch_size_count", {"model": "tiny-embed"}) or 0.0) - calls
    assert 1 <= made < len(texts)  # fewer model calls than requests: requests were batched together


def test_errors(client: TestClient) -> None:
    assert client.post("/v1/embeddings", json={"input": "x", "model": "nope"}).status_code == 404
    wrong_task = client.post("/v1/embeddings", json={"input": "x", "model": "tiny-sentiment"})
    assert wrong_task.status_code == 422 and "not a sentence-embedding model" in wrong_task.json()["error"]
    assert client.post("/v1/embeddings", json={"input": "x", "dimensions": 7}).status_code == 422
    assert client.post("/v1/embeddings", json={"input": ["x"] * 65}).status_code == 422
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["tiny-embed"]["task"] == "sentence-embedding"
    assert models["tiny-embed"]["runtime"]["dimension"] == 32 and models["tiny-embed"]["capabilities"] == []
