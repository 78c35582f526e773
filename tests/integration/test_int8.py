"""The int8 variant: written by export and by `training quantize`, recorded in the manifest, served as
`<name>-int8` (and as `<name>` with APP_ONNX_VARIANT=int8)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from contract import LEGACY_CLASSIFICATION, SCHEMA_VERSION, TEXT_CLASSIFICATION, open_artifact, sha256_file
from tests.conftest import LABELS, train_toy_classifier
from tests.integration.conftest import serve
from training.config import DataConfig
from training.export.int8 import INT8
from training.export.text_classification import export_classifier
from training.verbs.quantize import quantize

pytestmark = pytest.mark.slow

SENTENCES = ["the movie was very good .", "the plot was very bad .", "a great and warm story",
             "this film is dull and boring", "it was not fun", "the story was very cold ."]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, tiny_data: Path) -> Path:
    """The tiny BERT trained a few steps on the toy task, exported with its int8 variant: models/toy."""
    model, tokenizer = train_toy_classifier(tiny_base)
    return export_classifier(model, tokenizer, tmp_path_factory.mktemp("int8") / "models", "toy",
                             labels=LABELS, base_model=str(tiny_base), max_length=32,
                             metrics={"test_accuracy": 1.0}, training={"note": "toy"},
                             int8=DataConfig(data_dir=str(tiny_data)))


def test_export_writes_the_int8_variant_with_its_accuracy(toy: Path) -> None:
    manifest = open_artifact(toy).manifest
    variant = manifest["onnx"]["variants"]["int8"]
    assert variant["model"] == INT8 and INT8 in manifest["files"]
    assert variant["quantization"]["weight_type"] == "QInt8"
    metrics = variant["metrics"]
    assert metrics["split_sizes"] == {"test": 64}
    assert metrics["test_accuracy"] >= 0.9 and metrics["fp32_test_accuracy"] >= 0.9
    assert metrics["fp32_agreement"] >= 0.95
    assert (toy / INT8).stat().st_size < (toy / "model.onnx").stat().st_size


def test_quantize_verb_adds_the_variant_atomically(tiny_artifact: Path, tiny_data: Path,
                                                   tmp_path: Path) -> None:
    artifact = Path(shutil.copytree(tiny_artifact, tmp_path / "models" / tiny_artifact.name))
    before = json.loads((artifact / "manifest.json").read_text())
    assert quantize(artifact, DataConfig(data_dir=str(tiny_data)), threads=1) == artifact
    manifest = open_artifact(artifact).manifest  # schema-valid, every size and checksum right
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["task"] == TEXT_CLASSIFICATION
    assert manifest["files"][INT8]["sha256"] == sha256_file(artifact / INT8)
    assert manifest["files"][INT8]["bytes"] == (artifact / INT8).stat().st_size
    accuracy = manifest["onnx"]["variants"]["int8"]["metrics"]["test_accuracy"]
    assert 0.0 <= accuracy <= 1.0
    for name, entry in before["files"].items():
        assert manifest["files"][name] == entry, name
    assert (manifest["created_at"], manifest["metrics"]) == (before["created_at"], before["metrics"])
    assert sorted(p.name for p in artifact.parent.iterdir()) == [artifact.name]  # no staging leftovers
    with pytest.raises(ValueError, match="differ from the artifact's"):
        quantize(artifact, DataConfig(data_dir=str(tiny_data), labels=["bad", "good"]))


def test_quantize_takes_a_schema_1_3_sentiment_artifact_and_writes_the_current_task(
        tiny_artifact: Path, tiny_data: Path, tmp_path: Path) -> None:
    artifact = Path(shutil.copytree(tiny_artifact, tmp_path / "models" / tiny_artifact.name))
    legacy = json.loads((artifact / "manifest.json").read_text())
    legacy.update(task=LEGACY_CLASSIFICATION, schema_version="1.3")
    (artifact / "manifest.json").write_text(json.dumps(legacy))
    quantize(artifact, DataConfig(data_dir=str(tiny_data)), threads=1)
    manifest = open_artifact(artifact).manifest
    assert (manifest["task"], manifest["schema_version"]) == (TEXT_CLASSIFICATION, SCHEMA_VERSION)
    assert INT8 in manifest["files"] and manifest["created_at"] == legacy["created_at"]


def test_quantize_refuses_other_tasks(tiny_embedding_artifact: Path) -> None:
    with pytest.raises(ValueError, match="only text-classification and text-generation artifacts"):
        quantize(tiny_embedding_artifact, DataConfig())


def sentiment(client: Any, model: str) -> list[str]:
    response = client.post("/v1/sentiment", json={"texts": SENTENCES, "model": model})
    assert response.status_code == 200, response.text
    return [r["label"] for r in response.json()["results"]]


def test_the_app_serves_the_int8_variant_beside_fp32(toy: Path) -> None:
    variant_accuracy = open_artifact(toy).manifest["onnx"]["variants"]["int8"]["metrics"]["test_accuracy"]
    with serve(toy.parent) as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert set(models) == {"toy", "toy-int8"}
        assert models["toy"]["runtime"]["variant"] == "fp32"
        assert models["toy"]["metrics"]["test_accuracy"] == 1.0
        assert models["toy-int8"]["status"] == "ready"
        assert models["toy-int8"]["runtime"]["variant"] == "int8"
        assert models["toy-int8"]["metrics"]["test_accuracy"] == variant_accuracy
        fp32, int8 = sentiment(client, "toy"), sentiment(client, "toy-int8")
    assert fp32 == int8 == ["positive", "negative", "positive", "negative", "positive", "negative"]


def test_onnx_variant_setting_serves_int8_under_the_plain_name(toy: Path) -> None:
    with serve(toy.parent, onnx_variant="int8") as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert models["toy"]["runtime"]["variant"] == "int8"
        assert models["toy-int8"]["runtime"]["variant"] == "int8"
        assert sentiment(client, "toy") == sentiment(client, "toy-int8")
    with serve(toy.parent, runtime="torch") as client:
        assert [m["name"] for m in client.get("/v1/models").json()["models"]] == ["toy"]


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_serve_variants_false_loads_only_the_chosen_graph(toy: Path, variant: str, opened_graphs: list[str]) -> None:
    with serve(toy.parent, onnx_variant=variant, serve_variants=False) as client:
        models = client.get("/v1/models").json()["models"]
        assert [(m["name"], m["runtime"]["variant"]) for m in models] == [("toy", variant)]
        assert sorted(opened_graphs) == sorted(["model.attn.onnx", "model.onnx" if variant == "fp32" else INT8])
        assert sentiment(client, "toy") == ["positive", "negative", "positive", "negative", "positive", "negative"]
        assert client.post("/v1/sentiment", json={"text": "good", "model": "toy-int8"}).status_code == 404


def test_a_reload_after_quantize_serves_the_new_variant(tiny_artifact: Path, tiny_data: Path,
                                                       tmp_path: Path) -> None:
    artifact = Path(shutil.copytree(tiny_artifact, tmp_path / "models" / tiny_artifact.name))
    with serve(artifact.parent) as client:
        registry = client.app.state.service.registry
        assert "tiny-sentiment-int8" not in registry.entries
        quantize(artifact, DataConfig(data_dir=str(tiny_data)), threads=1)
        registry.reload("tiny-sentiment")
        assert registry.statuses() == {"tiny-sentiment": "ready", "tiny-sentiment-int8": "ready"}
        response = client.post("/v1/sentiment", json={"text": "good", "model": "tiny-sentiment-int8"})
        assert response.status_code == 200, response.text
