"""Writing artifacts the way training/ does, through the contract package: schema validation, checksums, atomic
publish."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from contract import (
    LEGACY_CLASSIFICATION,
    SCHEMA_PATH,
    SCHEMA_VERSION,
    TEXT_CLASSIFICATION,
    ArtifactError,
    file_table,
    open_artifact,
    publish,
    sha256_file,
    staging_dir,
    validate_manifest,
    write_manifest,
)

FIELDS = {
    "name": "demo",
    "task": TEXT_CLASSIFICATION,
    "labels": ["negative", "positive"],
    "base_model": "tiny",
    "max_length": 32,
    "onnx": {"model": "model.onnx", "inputs": ["input_ids", "attention_mask"], "outputs": ["logits"], "opset": 18},
    "metrics": {"test_accuracy": 0.9, "test_f1": 0.9, "split_sizes": {"train": 1, "val": 1, "test": 1}},
    "training": {"seed": 1},
}


def artifact(root: Path) -> dict:
    (root / "hf").mkdir(parents=True)
    (root / "hf" / "config.json").write_text("{}")
    (root / "model.onnx").write_bytes(b"\x00onnx")
    return write_manifest(root, copy.deepcopy(FIELDS))


def test_written_manifest_is_valid_and_lists_every_file(tmp_path: Path) -> None:
    manifest = artifact(tmp_path)
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert set(manifest["files"]) == {"hf/config.json", "model.onnx"}
    assert manifest["files"]["model.onnx"] == {"sha256": sha256_file(tmp_path / "model.onnx"), "bytes": 5}
    assert "torch" in manifest["exporter"]


@pytest.mark.parametrize(
    "breakage",
    [
        lambda m: m.pop("files"),
        lambda m: m.update(schema_version="2.0"),
        lambda m: m.update(task="translation"),
        lambda m: m.pop("labels"),
        lambda m: m.update(name="../etc"),
        lambda m: m["files"]["model.onnx"].update(sha256="xyz"),
        lambda m: m["metrics"].update(test_accuracy=1.5),
        lambda m: m.update(created_at="yesterday"),
    ],
)
def test_schema_rejects_broken_manifests(tmp_path: Path, breakage) -> None:
    manifest = artifact(tmp_path)
    breakage(manifest)
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(manifest)


ARCHITECTURE = {"name": "transformer-lm", "layers": 4, "heads": 4, "d_model": 256, "d_ff": 512,
                "position": "learned", "experts": 4, "top_k": 2, "capacity_factor": 1.25}


@pytest.mark.parametrize(("change", "valid"), [
    ({}, True),
    ({"experts": None, "top_k": None, "capacity_factor": None}, True),  # a dense model
    ({"top_k": None}, False),  # experts need their top-k and capacity factor
    ({"position": "rotary"}, False),
    ({"layers": 0}, False),
])
def test_architecture_block(tmp_path: Path, change: dict, valid: bool) -> None:
    block = {k: v for k, v in {**ARCHITECTURE, **change}.items() if v is not None}
    manifest = {**artifact(tmp_path), "architecture": block}
    if valid:
        validate_manifest(manifest)
    else:
        with pytest.raises(jsonschema.ValidationError):
            validate_manifest(manifest)


def test_a_legacy_sentiment_task_still_validates(tmp_path: Path) -> None:
    manifest = {**artifact(tmp_path), "schema_version": "1.3"}
    validate_manifest({**manifest, "task": LEGACY_CLASSIFICATION})  # raises if the schema dropped it
    with pytest.raises(jsonschema.ValidationError, match="is not one of"):  # the task list is not open-ended
        validate_manifest({**manifest, "task": "sentiments"})


def test_the_schema_is_the_contract_package_data() -> None:
    assert SCHEMA_PATH.parent.name == "contract" and SCHEMA_PATH.is_file()


def openable(root: Path) -> Path:
    """``root`` with the files `open_artifact` requires (the HF config, tokenizer and weights) and a model.onnx."""
    (root / "hf").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (root / "hf" / name).write_text("{}")
    (root / "model.onnx").write_bytes(b"\x00onnx")
    return root


def test_a_written_artifact_opens_with_strong_verification(tmp_path: Path) -> None:
    root = openable(tmp_path / "demo")
    write_manifest(root, copy.deepcopy(FIELDS))
    assert open_artifact(root).task == TEXT_CLASSIFICATION


def test_an_artifact_seen_through_its_variant(tmp_path: Path) -> None:
    root = openable(tmp_path / "demo")
    (root / "model.int8.onnx").write_bytes(b"\x00int8")
    fields = copy.deepcopy(FIELDS)
    fields["onnx"]["variants"] = {"int8": {"model": "model.int8.onnx", "metrics": {"test_accuracy": 0.8}},
                                  "unlisted": {"model": "missing.onnx", "metrics": {}}}
    write_manifest(root, fields)
    opened = open_artifact(root)
    int8 = opened.variant("int8")
    assert opened.onnx_variants == int8.onnx_variants == ["int8", "unlisted"]
    assert (opened.onnx_variant, int8.onnx_variant) == ("fp32", "int8")
    assert int8.onnx_model == root / "model.int8.onnx" and int8.onnx["variant"] == "int8"
    assert int8.manifest["metrics"] == {"test_accuracy": 0.8} and int8.name == opened.name
    assert opened.onnx_model == root / "model.onnx" and opened.manifest["metrics"]["test_accuracy"] == 0.9
    with pytest.raises(ArtifactError, match="no ONNX variant 'fp16'"):
        opened.variant("fp16")
    with pytest.raises(ArtifactError, match="not listed"):
        opened.variant("unlisted")


def test_file_table_changes_when_a_byte_changes(tmp_path: Path) -> None:
    artifact(tmp_path)
    before = file_table(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"\x01onnx")
    assert file_table(tmp_path)["model.onnx"]["sha256"] != before["model.onnx"]["sha256"]


def test_publish_replaces_an_existing_version_whole(tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = staging_dir(models, "demo")
    (first / "v").write_text("1")
    publish(first, models / "demo")
    second = staging_dir(models, "demo")
    (second / "v").write_text("2")
    publish(second, models / "demo")
    assert (models / "demo" / "v").read_text() == "2"
    assert sorted(p.name for p in models.iterdir()) == ["demo"]
