"""APP_TORCH_DTYPE=bf16 on a CPU: the torch runtime serves the toy classifier's fp32 labels, generates, reports its
dtype; on a CPU without bf16 instructions the start fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.runtimes import DeviceError
from app.runtimes import torch as torch_runtime
from app.settings import Settings
from tests.conftest import LABELS, train_toy_classifier
from tests.integration.conftest import serve
from training.export.text_classification import export_classifier

SENTENCES = ["the movie was very good .", "the plot was very bad .", "a great and warm story",
             "this film is dull and boring", "it was not fun", "the story was very cold .", "superb", "poor"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """The tiny BERT trained a few steps on the toy task (clear margins, unlike the untrained fixture)."""
    model, tokenizer = train_toy_classifier(tiny_base)
    return export_classifier(model, tokenizer, tmp_path_factory.mktemp("bf16") / "models", "toy", labels=LABELS,
                             base_model=str(tiny_base), max_length=32, metrics={"test_accuracy": 1.0},
                             training={"note": "toy"})


@pytest.fixture(autouse=True)
def cpu_with_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever this machine's CPU: torch emulates bf16 where it lacks the instructions, only slower."""
    monkeypatch.setattr(torch_runtime, "cpu_computes_bf16", lambda: True)


def classify(client: TestClient) -> list[dict[str, object]]:
    response = client.post("/v1/sentiment", json={"texts": SENTENCES, "model": "toy"})
    assert response.status_code == 200, response.text
    results: list[dict[str, object]] = response.json()["results"]
    return results


def test_bf16_serves_the_fp32_labels(toy: Path) -> None:
    with serve(toy.parent, runtime="torch", device="cpu") as client:
        fp32 = classify(client)
    with serve(toy.parent, runtime="torch", device="cpu", torch_dtype="bf16") as client:
        bf16 = classify(client)
        model = client.get("/v1/models/toy").json()
    assert (model["backend"], model["device"], model["runtime"]["dtype"]) == ("torch", "cpu", "bf16")
    assert [r["label"] for r in bf16] == [r["label"] for r in fp32]
    assert {r["label"] for r in fp32} == {"negative", "positive"}
    for ours, theirs in zip(bf16, fp32, strict=True):
        assert ours["scores"] == pytest.approx(theirs["scores"], abs=0.02)


def test_bf16_generates(tiny_lm_artifact: Path) -> None:
    with serve(tiny_lm_artifact.parent, runtime="torch", device="cpu", torch_dtype="bf16") as client:
        response = client.post("/v1/generate", json={"prompt": "The sea was calm and", "max_new_tokens": 6,
                                                     "temperature": 0})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] > 0


def test_bf16_refused_on_a_cpu_without_bf16(toy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_runtime, "cpu_computes_bf16", lambda: False)
    settings = Settings(_env_file=None, models_dir=toy.parent, runtime="torch", device="cpu", torch_dtype="bf16")
    with pytest.raises(DeviceError, match="'bf16' cannot run on the torch runtime on cpu here"), \
            TestClient(create_app(settings)):
        pass
