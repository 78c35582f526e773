"""The reader side of the artifact contract: schema, major version, checksums, discovery."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from contract import ArtifactError, discover, load_schema, open_artifact


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return load_schema()


@pytest.fixture
def copy(tiny_artifact: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_artifact, tmp_path / tiny_artifact.name))


def edit_manifest(folder: Path, **changes: Any) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_valid_artifact(tiny_artifact: Path, schema: dict[str, Any]) -> None:
    artifact = open_artifact(tiny_artifact, schema)
    assert artifact.name == "tiny-sentiment"
    assert artifact.labels == ["negative", "positive"]
    assert artifact.max_length == 32
    assert artifact.onnx_model.is_file()
    assert (artifact.hf_dir / "tokenizer.json").is_file()


def test_checksum_mismatch_refuses(copy: Path, schema: dict[str, Any]) -> None:
    onnx = copy / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"checksum mismatch for model\.onnx"):
        open_artifact(copy, schema)


def test_missing_and_resized_files(copy: Path, schema: dict[str, Any]) -> None:
    with (copy / "hf" / "config.json").open("a") as fh:
        fh.write(" ")
    with pytest.raises(ArtifactError, match=r"size mismatch for hf/config\.json"):
        open_artifact(copy, schema)
    (copy / "hf" / "config.json").unlink()
    with pytest.raises(ArtifactError, match=r"missing file hf/config\.json"):
        open_artifact(copy, schema)


@pytest.mark.parametrize(("changes", "message"), [
    ({"schema_version": "2.0"}, "unsupported schema_version '2.0'"),
    ({"schema_version": None}, "unsupported schema_version"),
    ({"max_length": 0}, "violates the schema at max_length"),
    ({"task": "translation"}, "violates the schema at task"),
    ({"name": "other-name"}, "does not match folder"),
    ({"files": {"../escape.txt": {"sha256": "0" * 64, "bytes": 1}}}, "outside the artifact folder"),
    ({"files": {"model.onnx": {"sha256": "0" * 64, "bytes": 1}}}, "size mismatch"),
])
def test_contract_violations(copy: Path, schema: dict[str, Any], changes: dict[str, Any],
                             message: str) -> None:
    edit_manifest(copy, **changes)
    with pytest.raises(ArtifactError, match=message):
        open_artifact(copy, schema)


def test_unlisted_required_file_is_refused(copy: Path, schema: dict[str, Any]) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"]["hf/model.safetensors"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="not listed"):
        open_artifact(copy, schema)


def test_unreadable_manifest(copy: Path, schema: dict[str, Any]) -> None:
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"unreadable manifest\.json"):
        open_artifact(copy, schema)


def test_discover_skips_hidden_and_incomplete(tmp_path: Path) -> None:
    for name in ("b-model", "a-model", ".tmp-c-1234", "no-manifest"):
        (tmp_path / name).mkdir()
    for name in ("b-model", "a-model", ".tmp-c-1234"):
        (tmp_path / name / "manifest.json").write_text("{}")
    (tmp_path / "README.md").write_text("not a model")
    assert [p.name for p in discover(tmp_path)] == ["a-model", "b-model"]
    assert discover(tmp_path / "absent") == []
