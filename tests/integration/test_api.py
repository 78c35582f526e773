"""The app through ASGI (TestClient runs the lifespan): API contract, errors, readiness, failed models."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.registry import Registry
from app.main import create_app
from app.runtimes import DeviceError
from app.settings import Settings, SettingsError
from tests.integration.conftest import serve, warming

SENTENCES = ["the movie was very good .", "the plot was very bad .", "a great and warm story",
             "this film is dull and boring", "it was not fun"]


@pytest.fixture(scope="module", params=["onnx", "torch"])
def client(request: pytest.FixtureRequest, tiny_artifact: Path) -> Iterator[TestClient]:
    with serve(tiny_artifact.parent, runtime=request.param, max_batch_texts=8, max_text_chars=300) as c:
        yield c


def classify(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/sentiment", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_single_and_batch_in_input_order(client: TestClient) -> None:
    batch = classify(client, texts=SENTENCES)
    assert batch["model"] == "tiny-sentiment"
    assert len(batch["results"]) == len(SENTENCES)
    for text, result in zip(SENTENCES, batch["results"], strict=True):
        single = classify(client, text=text, model="tiny-sentiment")["results"][0]
        assert single["label"] == result["label"]
        assert single["scores"] == pytest.approx(result["scores"], abs=1e-5)
        assert result["label"] in ("negative", "positive")
        assert sum(result["scores"].values()) == pytest.approx(1.0)
        assert result["score"] == result["scores"][result["label"]]
        assert result["truncated"] is False


def test_truncated_flag(client: TestClient) -> None:
    results = classify(client, texts=["good " * 50, "good"], long_text="truncate")["results"]
    assert [r["truncated"] for r in results] == [True, False]
    assert [(r["strategy"], r["chunks"]) for r in results] == [("truncate", 1), ("truncate", 1)]


def test_backends_agree_through_the_api(tiny_artifact: Path) -> None:
    answers = {}
    for backend in ("onnx", "torch"):
        with serve(tiny_artifact.parent, runtime=backend) as client:
            answers[backend] = classify(client, texts=SENTENCES)["results"]
    assert [r["label"] for r in answers["onnx"]] == [r["label"] for r in answers["torch"]]


@pytest.mark.parametrize(("body", "where"), [
    ({"text": ""}, "text"), ({"text": "   "}, "text"), ({"texts": []}, "texts"), ({"text": 42}, "text"),
    ({"texts": "one string"}, "texts"), ({"texts": ["fine", " "]}, "texts"), ({}, "body"),
    ({"text": "a", "texts": ["b"]}, "body"), ({"text": "a", "extra": 1}, "extra"),
    ({"texts": ["x"] * 9}, "texts"), ({"texts": ["ok", "y" * 301]}, "texts"), ({"text": "y" * 301}, '["body", "text"]'),
])
def test_bad_input_is_422_with_clear_json(client: TestClient, body: dict[str, Any], where: str) -> None:
    response = client.post("/v1/sentiment", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "invalid_input"
    assert error["error"] and where in json.dumps(error["detail"])
    assert error["request_id"] == response.headers["X-Request-ID"]


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/v1/sentiment", content=b"{not json",
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"


def test_unknown_model_is_404(client: TestClient) -> None:
    response = client.post("/v1/sentiment", json={"text": "good", "model": "nope"})
    assert response.status_code == 404
    assert response.json()["code"] == "model_not_found"
    assert response.json()["available"] == ["tiny-sentiment"]


def test_request_id_echoed_or_generated(client: TestClient) -> None:
    given = client.get("/health/live", headers={"X-Request-ID": "trace-123"})
    assert given.headers["X-Request-ID"] == "trace-123"
    made = client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"})
    assert len(made.headers["X-Request-ID"]) == 32
    assert made.headers["X-Request-ID"] != client.get("/health/live").headers["X-Request-ID"]


def test_models_and_health(client: TestClient) -> None:
    assert client.get("/health/live").json()["status"] == "alive"
    assert client.get("/health/ready").json() == {"status": "ready", "models": {"tiny-sentiment": "ready"}}
    (model,) = client.get("/v1/models").json()["models"]
    backend = client.app.state.settings.runtime  # type: ignore[attr-defined]
    assert (model["name"], model["task"], model["status"]) == ("tiny-sentiment", "text-classification", "ready")
    assert (model["backend"], model["device"]) == (backend, "cpu")
    assert model["metrics"]["test_accuracy"] == 0.5
    assert model["version"] and model["schema_version"].startswith("1.")
    assert model["labels"] == ["negative", "positive"] and model["max_length"] == 32


def test_unexpected_error_is_generic_500(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    registry: Registry = client.app.state.service.registry  # type: ignore[attr-defined]
    backend = registry.entries["tiny-sentiment"].model
    monkeypatch.setattr(backend, "predict", lambda texts: 1 / 0)
    response = client.post("/v1/sentiment", json={"text": "good"}, headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error", "code": "internal_error",
                               "request_id": "req-500"}
    assert response.headers["X-Request-ID"] == "req-500"


def test_docs_offline(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "/static-offline-docs/" in html
        assert "cdn" not in html.lower()
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static-offline-docs/redoc.standalone.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "examples" in spec["components"]["schemas"]["SentimentRequest"]
    assert set(spec["paths"]["/v1/sentiment"]["post"]["responses"]) >= {"200", "404", "422", "429", "503"}


def test_ready_is_503_until_warm(tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with warming(tiny_artifact.parent, monkeypatch) as (client, release):
        not_ready = client.get("/health/ready")
        assert not_ready.status_code == 503
        assert not_ready.json()["models"] == {"tiny-sentiment": "warming"}
        assert client.get("/health/live").status_code == 200
        assert client.post("/v1/sentiment", json={"text": "good"}).status_code == 503
        release.set()
        deadline = time.monotonic() + 30
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_checksum_mismatch_fails_one_model_others_serve(tiny_artifact: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_artifact, tmp_path / "tiny-sentiment")
    broken = Path(shutil.copytree(tiny_artifact, tmp_path / "tiny-broken"))
    manifest = json.loads((broken / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "name": "tiny-broken"}))
    data = bytearray((broken / "model.onnx").read_bytes())
    data[-100] ^= 0x01
    (broken / "model.onnx").write_bytes(bytes(data))
    with serve(tmp_path) as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert models["tiny-broken"]["status"] == "failed"
        assert "checksum mismatch for model.onnx" in models["tiny-broken"]["error"]
        assert models["tiny-sentiment"]["status"] == "ready"
        assert client.get("/health/ready").status_code == 200
        assert classify(client, text="good")["model"] == "tiny-sentiment"
        refused = client.post("/v1/sentiment", json={"text": "good", "model": "tiny-broken"})
        assert refused.status_code == 503 and "checksum mismatch" in refused.json()["error"]


def test_no_models_is_not_ready(tmp_path: Path) -> None:
    with serve(tmp_path) as client:
        assert client.get("/health/ready").status_code == 503
        assert client.get("/v1/models").json() == {"object": "list", "data": [], "models": []}
        assert client.post("/v1/sentiment", json={"text": "good"}).status_code == 503


def test_unknown_default_model_fails_start(tiny_artifact: Path) -> None:
    settings = Settings(_env_file=None, models_dir=tiny_artifact.parent, default_model="absent")
    with pytest.raises(SettingsError, match="APP_DEFAULT_MODEL='absent'"), TestClient(create_app(settings)):
        pass


def test_default_model_setting(tiny_artifact: Path, tmp_path: Path) -> None:
    for name in ("a-first", "tiny-sentiment"):
        copied = Path(shutil.copytree(tiny_artifact, tmp_path / name))
        manifest = json.loads((copied / "manifest.json").read_text())
        (copied / "manifest.json").write_text(json.dumps({**manifest, "name": name}))
    with serve(tmp_path) as client:
        assert classify(client, text="good")["model"] == "a-first"
    with serve(tmp_path, default_model="tiny-sentiment") as client:
        assert classify(client, text="good")["model"] == "tiny-sentiment"


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_explicit_cuda_without_gpu_fails_start(tiny_artifact: Path, backend: str) -> None:
    settings = Settings(_env_file=None, models_dir=tiny_artifact.parent,
                        backend=backend, device="cuda")
    with pytest.raises(DeviceError, match="'cuda' requested"), TestClient(create_app(settings)):
        pass


REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
OBVIOUS = [("This movie is wonderful, I loved every minute of it.", "positive"),
           ("A masterpiece: brilliant acting and a beautiful, moving story.", "positive"),
           ("Terrible film. Boring, dull and a complete waste of time.", "negative"),
           ("I hated it; the worst movie I have seen this year.", "negative")]


@pytest.mark.skipif(not any(REPO_MODELS.glob("*/manifest.json")),
                    reason="no trained artifact in models/ yet (run the training first)")
def test_default_model_labels_obvious_sentences() -> None:
    with serve(REPO_MODELS) as client:
        body = classify(client, texts=[text for text, _ in OBVIOUS])
    assert [r["label"] for r in body["results"]] == [label for _, label in OBVIOUS]
