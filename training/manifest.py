"""Writing the artifact contract (models/manifest.json.schema): manifest, checksums, atomic publish."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_VERSION = "1.3"
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "contract" / "manifest.schema.json"
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(root: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``root`` except the manifest itself."""
    return {
        path.relative_to(root).as_posix(): {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def exporter_versions() -> dict[str, str]:
    out = {}
    for pkg in ("torch", "transformers", "lightning", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def validate_manifest(manifest: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(manifest, schema, format_checker=jsonschema.FormatChecker())


def read_verified_manifest(root: Path) -> dict[str, Any]:
    """The manifest of an artifact folder, validated against the schema, every checksum verified."""
    manifest: dict[str, Any] = json.loads((root / MANIFEST).read_text())
    validate_manifest(manifest)
    for name, entry in manifest["files"].items():
        if sha256_file(root / name) != entry["sha256"]:
            raise ValueError(f"{root}: checksum mismatch on {name}")
    return manifest


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
