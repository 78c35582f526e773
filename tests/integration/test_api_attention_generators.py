"""POST /v1/attention and GET /v1/attention.png for a text generator (tiny GPT-2) through ASGI, both backends;
the default model when classifiers and generators are served together; a generator without attention graph."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import serve
from tests.integration.test_api_attention import attend, expect_invalid, png_size
from tests.lm_helpers import linked_models_dir, without_attention_graph

TEXT = "The sea was calm"
CAP = 12


@pytest.fixture(scope="module", params=["onnx", "torch"])
def client(request: pytest.FixtureRequest, tiny_lm_artifact: Path) -> Iterator[TestClient]:
    with serve(tiny_lm_artifact.parent, runtime=request.param, max_attention_tokens=CAP) as c:
        yield c


def test_json_tokens_causal_attentions_and_next_tokens(client: TestClient) -> None:
    body = attend(client, text=TEXT)
    assert body["model"] == "tiny-gpt2"  # the only model: no sentiment model to prefer
    count = len(body["tokens"])
    assert "".join(body["tokens"]).replace("Ġ", " ") == TEXT
    assert (body["num_layers"], body["num_heads"], body["aggregate"]) == (2, 2, "none")
    attentions = np.array(body["attentions"])
    assert attentions.shape == (2, 2, count, count)
    assert np.allclose(attentions.sum(axis=-1), 1.0, atol=1e-5)
    assert np.triu(attentions, k=1).max() == 0.0
    prediction = body["prediction"]
    assert prediction["type"] == "next_token"
    probabilities = [candidate["probability"] for candidate in prediction["top_k"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) <= 1 + 1e-6
    assert set(prediction["top_k"][0]) == {"id", "token", "text", "probability"}


def test_layer_head_selection_mean_and_rollout(client: TestClient) -> None:
    full = np.array(attend(client, text=TEXT)["attentions"], dtype=np.float32)
    picked = attend(client, text=TEXT, model="tiny-gpt2", layers=[1], heads=[1])
    assert (picked["layers"], picked["heads"]) == ([1], [1])
    assert np.allclose(np.array(picked["attentions"]), full[[1]][:, [1]], atol=1e-6)
    mean = np.array(attend(client, text=TEXT, layers=[0], aggregate="mean")["attentions"])
    assert np.allclose(mean[0, 0], full[0].mean(axis=0), atol=1e-5)
    rolled = np.array(attend(client, text=TEXT, aggregate="rollout")["attentions"])
    assert rolled.shape == (1, 1, full.shape[2], full.shape[2])
    assert np.triu(rolled, k=1).max() < 1e-6  # rollout of causal maps stays causal
    expect_invalid(client.post("/v1/attention", json={"text": TEXT, "heads": [2]}), ["body", "heads"],
                   "heads [2] out of range: the model has 2 heads")


def test_png_from_post_and_get(client: TestClient) -> None:
    posted = client.post("/v1/attention?format=png", json={"text": TEXT, "layers": [1], "heads": [0]})
    assert posted.status_code == 200, posted.text
    assert posted.headers["content-type"] == "image/png"
    assert min(png_size(posted.content)) >= 400
    for params in ({"layer": 0, "head": 1}, {"aggregate": "rollout"}):
        got = client.get("/v1/attention.png", params={"text": TEXT, "model": "tiny-gpt2", **params})
        assert got.status_code == 200, got.text
        assert min(png_size(got.content)) >= 400


def test_token_cap_is_422(client: TestClient) -> None:
    response = client.post("/v1/attention", json={"text": "the sea " * CAP})
    expect_invalid(response, ["body", "text"], f"attention is limited to {CAP} tokens (APP_MAX_ATTENTION_TOKENS)")
    expect_invalid(client.get("/v1/attention.png", params={"text": "the sea " * CAP}), ["query", "text"],
                   f"attention is limited to {CAP} tokens")


def test_default_model_prefers_a_classifier(tiny_artifact: Path, tiny_lm_artifact: Path, tmp_path: Path) -> None:
    models = linked_models_dir(tmp_path / "models", tiny_artifact, tiny_lm_artifact)
    with serve(models) as client:
        assert attend(client, text=TEXT)["prediction"]["type"] == "classification"
        assert attend(client, text=TEXT, model="tiny-gpt2")["prediction"]["type"] == "next_token"
    with serve(models, default_model="tiny-gpt2") as client:
        assert attend(client, text=TEXT)["model"] == "tiny-gpt2"


@pytest.mark.parametrize(("backend", "status"), [("onnx", 422), ("torch", 200)])
def test_generator_without_attention_graph(tiny_lm_artifact: Path, tmp_path: Path, backend: str,
                                           status: int) -> None:
    without_attention_graph(tiny_lm_artifact, tmp_path)
    with serve(tmp_path, runtime=backend) as client:
        generated = client.post("/v1/generate", json={"prompt": TEXT, "max_new_tokens": 2})
        assert generated.status_code == 200, generated.text
        response = client.post("/v1/attention", json={"text": TEXT})
        assert response.status_code == status, response.text
        if status == 422:
            error: dict[str, Any] = response.json()
            assert "no ONNX attention graph" in error["error"] and "APP_RUNTIME=torch" in error["error"]
            assert error["detail"][0]["loc"] == ["body", "model"]
