"""Writing artifacts: the manifest (versioned, validated, with checksums) and the atomic publish of a folder."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jsonschema

from contract.hashing import MANIFEST, file_table

SCHEMA_VERSION = "1.5"
SUPPORTED_MAJOR = 1
SCHEMA_PATH = Path(__file__).resolve().with_name("manifest.schema.json")


def exporter_versions() -> dict[str, str]:
    out = {}
    for pkg in ("torch", "transformers", "lightning", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def validate_manifest(manifest: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> None:
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(manifest, schema, format_checker=jsonschema.FormatChecker())


def write_manifest(root: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Complete ``fields`` with version, time, exporters and checksums; validate; write."""
    manifest = {
        "schema_version": SCHEMA_VERSION,
        **fields,
        "hf_dir": "hf",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "exporter": exporter_versions(),
        "files": file_table(root),
    }
    validate_manifest(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def staging_dir(models_dir: Path, name: str) -> Path:
    """A fresh temporary sibling of the final folder (same filesystem, so rename is atomic)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def publish(staging: Path, final: Path) -> Path:
    """Move a complete artifact into place; an existing version is replaced only once the new one is whole."""
    if final.exists():
        old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old)
    else:
        staging.rename(final)
    return final

