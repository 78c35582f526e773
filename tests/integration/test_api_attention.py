"""POST /v1/attention (JSON, PNG), GET /v1/attention.png and the /attention page through ASGI."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.tasks.attention import rollout
from tests.integration.conftest import serve

TEXT = "the movie was very good ."  # 8 tokens with [CLS] and [SEP]
CAP = 16


@pytest.fixture(scope="module", params=["onnx", "torch"])
def client(request: pytest.FixtureRequest, tiny_artifact: Path) -> Iterator[TestClient]:
    with serve(tiny_artifact.parent, runtime=request.param, max_attention_tokens=CAP, max_text_chars=300) as c:
        yield c


def attend(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/attention", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the PNG signature."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def expect_invalid(response: Any, where: list[str], text: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "invalid_input"
    assert text in error["error"]
    assert any(detail["loc"][:len(where)] == where for detail in error["detail"]), error["detail"]


def test_full_attention_json(client: TestClient) -> None:
    body = attend(client, text=TEXT)
    assert body["model"] == "tiny-sentiment"
    assert body["backend"] == client.app.state.settings.runtime  # type: ignore[attr-defined]
    assert body["tokens"] == ["[CLS]", "the", "movie", "was", "very", "good", ".", "[SEP]"]
    assert (body["num_layers"], body["num_heads"]) == (2, 4)
    assert (body["layers"], body["heads"], body["aggregate"]) == ([0, 1], [0, 1, 2, 3], "none")
    attentions = np.array(body["attentions"])
    assert attentions.shape == (2, 4, 8, 8)
    assert np.allclose(attentions.sum(axis=-1), 1.0, atol=1e-5)
    sentiment = client.post("/v1/sentiment", json={"text": TEXT}).json()["results"][0]
    prediction = body["prediction"]
    assert prediction["type"] == "classification"
    assert prediction["label"] == sentiment["label"]
    assert prediction["score"] == pytest.approx(sentiment["score"], abs=1e-5)


def test_layer_and_head_selection(client: TestClient) -> None:
    full = np.array(attend(client, text=TEXT)["attentions"])
    picked = attend(client, text=TEXT, layers=[1], heads=[3, 0, 3])
    assert (picked["layers"], picked["heads"]) == ([1], [0, 3])
    assert np.allclose(np.array(picked["attentions"]), full[[1]][:, [0, 3]], atol=1e-6)


def test_mean_and_rollout(client: TestClient) -> None:
    full = np.array(attend(client, text=TEXT)["attentions"], dtype=np.float32)
    mean = np.array(attend(client, text=TEXT, layers=[0], aggregate="mean")["attentions"])
    assert mean.shape == (1, 1, 8, 8)
    assert np.allclose(mean[0, 0], full[0].mean(axis=0), atol=1e-5)
    rolled = attend(client, text=TEXT, aggregate="rollout")
    assert np.array(rolled["attentions"]).shape == (1, 1, 8, 8)
    assert np.allclose(np.array(rolled["attentions"]), rollout(full), atol=1e-5)
    assert np.allclose(np.array(rolled["attentions"]).sum(axis=-1), 1.0, atol=1e-5)


def test_token_cap_is_422(client: TestClient) -> None:
    assert len(attend(client, text="good " * (CAP - 2))["tokens"]) == CAP
    response = client.post("/v1/attention", json={"text": "good " * (CAP - 1)})
    expect_invalid(response, ["body", "text"], f"text is {CAP + 1} tokens; attention is limited to {CAP} tokens")
    assert "APP_MAX_ATTENTION_TOKENS" in response.json()["error"]
    too_many = client.get("/v1/attention.png", params={"text": "good " * 40})
    expect_invalid(too_many, ["query", "text"], "attention is limited to 16 tokens")


@pytest.mark.parametrize(("body", "where", "text"), [
    ({"layers": [2]}, ["body", "layers"], "layers [2] out of range: the model has 2 layers"),
    ({"heads": [0, 4]}, ["body", "heads"], "heads [4] out of range: the model has 4 heads"),
    ({"layers": [-1]}, ["body", "layers", 0], "invalid request"),
    ({"heads": []}, ["body", "heads"], "invalid request"),
    ({"aggregate": "max"}, ["body", "aggregate"], "invalid request"),
    ({"text": "  "}, ["body", "text"], "invalid request"),
    ({"text": "y" * 301}, ["body", "text"], "text is too long: 301 > 300 characters"),
])
def test_bad_requests_are_422(client: TestClient, body: dict[str, Any], where: list[str], text: str) -> None:
    expect_invalid(client.post("/v1/attention", json={"text": TEXT, **body}), where, text)


def test_png_from_post_and_get(client: TestClient) -> None:
    posted = client.post("/v1/attention?format=png", json={"text": TEXT, "layers": [1], "heads": [2]})
    assert posted.status_code == 200
    assert posted.headers["content-type"] == "image/png"
    width, height = png_size(posted.content)
    assert width >= 400 and height >= 400
    for params in ({"layer": 1, "head": 3}, {"aggregate": "mean", "layer": 0}, {"aggregate": "rollout"}):
        got = client.get("/v1/attention.png", params={"text": TEXT, "model": "tiny-sentiment", **params})
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "image/png"
        assert min(png_size(got.content)) >= 400


def test_png_needs_one_matrix(client: TestClient) -> None:
    response = client.post("/v1/attention?format=png", json={"text": TEXT, "layers": [0, 1]})
    expect_invalid(response, ["body", "layers"], "a PNG shows one matrix")
    expect_invalid(client.get("/v1/attention.png", params={"text": TEXT, "layer": 2}), ["query", "layers"],
                   "layers [2] out of range")
    expect_invalid(client.get("/v1/attention.png", params={"text": TEXT, "head": -1}), ["query", "head"],
                   "invalid request")


def test_unknown_model_is_404(client: TestClient) -> None:
    for response in (client.post("/v1/attention", json={"text": TEXT, "model": "nope"}),
                     client.get("/v1/attention.png", params={"text": TEXT, "model": "nope"})):
        assert response.status_code == 404
        assert response.json()["code"] == "model_not_found"


def test_viewer_page_and_docs(client: TestClient) -> None:
    page = client.get("/attention")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/attention.js">' in page.text
    script = client.get("/attention.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "/v1/attention" in script.text and "/v1/models" in script.text
    for asset in (page.text, script.text):
        assert 'src="http' not in asset and 'href="http' not in asset and "cdn" not in asset.lower()
    spec = client.get("/openapi.json").json()
    assert "examples" in spec["components"]["schemas"]["AttentionRequest"]
    post = spec["paths"]["/v1/attention"]["post"]
    assert set(post["responses"]) >= {"200", "404", "422", "429", "503"}
    assert "image/png" in post["responses"]["200"]["content"]
    assert "/v1/attention.png" in spec["paths"] and "/attention" not in spec["paths"]
