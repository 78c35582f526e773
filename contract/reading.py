"""Reading artifacts: discover folders, validate the manifest, verify every listed file before anything loads."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from contract.hashing import MANIFEST, sha256_file
from contract.tasks import canonical_task
from contract.writing import SCHEMA_PATH, SUPPORTED_MAJOR

log = logging.getLogger(__name__)

HF_FILES = ("config.json", "tokenizer.json", "model.safetensors")
"""Files of the HF folder every artifact has, whatever its task."""


class ArtifactError(RuntimeError):
    """The folder breaks the contract; the model is refused."""


@dataclass(frozen=True)
class Artifact:
    """A verified model folder: every file listed in its manifest has the recorded size and sha256."""

    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str = ""
    """sha256 of manifest.json as read: with `created_at` it identifies the version being served."""

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def task(self) -> str:
        """The task by its current name (artifacts of schema <= 1.3 say ``sentiment`` for text-classification)."""
        return canonical_task(str(self.manifest["task"]))

    @property
    def labels(self) -> list[str]:
        return [str(label) for label in self.manifest.get("labels", [])]

    @property
    def max_length(self) -> int:
        return int(self.manifest["max_length"])

    @property
    def hf_dir(self) -> Path:
        return self.path / str(self.manifest["hf_dir"])

    @property
    def onnx(self) -> dict[str, Any]:
        """The manifest's ``onnx`` block ({} when the artifact has no ONNX graph)."""
        return dict(self.manifest.get("onnx") or {})

    @property
    def onnx_model(self) -> Path:
        return self.path / str(self.manifest["onnx"]["model"])

    @property
    def onnx_variant(self) -> str:
        """Which graph ``onnx.model`` is: ``fp32``, or the variant this view was made for by `variant`."""
        return str(self.onnx.get("variant", "fp32"))

    @property
    def onnx_variants(self) -> list[str]:
        """Names of the other graphs of the model (manifest ``onnx.variants``, schema 1.3), sorted."""
        return sorted(self.onnx.get("variants", {}))

    def variant(self, name: str) -> Artifact:
        """The artifact seen through one of its ONNX variants (manifest ``onnx.variants``, schema 1.3; e.g. int8):
        that graph as ``onnx.model``, its name as ``onnx.variant``, its own metrics in place of the fp32 ones."""
        spec = self.onnx.get("variants", {}).get(name)
        if spec is None:
            raise ArtifactError(f"{self.name} has no ONNX variant {name!r}")
        self.require(spec["model"])
        onnx = {**self.onnx, "model": spec["model"], "variant": name}
        return dataclasses.replace(self, manifest={**self.manifest, "onnx": onnx, "metrics": spec["metrics"]})

    def require(self, *relative: str) -> None:
        """Each of ``relative`` is listed in the manifest (so it was verified); else `ArtifactError`."""
        missing = [rel for rel in relative if rel not in self.manifest["files"]]
        if missing:
            raise ArtifactError(f"required files not listed (so not verified) in {MANIFEST}: {', '.join(missing)}")


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def is_artifact(path: Path) -> bool:
    """A visible folder holding manifest.json: a published artifact (staging folders are hidden, ``.tmp-*``, and
    publishing renames a complete folder into place)."""
    return path.is_dir() and not path.name.startswith(".") and (path / MANIFEST).is_file()


def discover(models_dir: Path) -> list[Path]:
    """Every artifact folder (`is_artifact`), sorted by name."""
    if not models_dir.is_dir():
        log.warning("models dir %s does not exist", models_dir)
        return []
    folders = []
    for path in sorted(models_dir.iterdir()):
        if is_artifact(path):
            folders.append(path)
        elif path.is_dir() and not path.name.startswith("."):
            log.warning("skipping %s: no %s", path, MANIFEST)
    return folders


def read_manifest(folder: Path, schema: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """Parse and validate manifest.json: known schema major first (clearer message), then the full schema.

    Returns the manifest and the sha256 of the bytes it was parsed from.
    """
    try:
        raw = (folder / MANIFEST).read_bytes()
        manifest = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"unreadable {MANIFEST}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{MANIFEST} is not a JSON object")
    version = str(manifest.get("schema_version", ""))
    if version.split(".")[0] != str(SUPPORTED_MAJOR):
        raise ArtifactError(f"unsupported schema_version {version!r}: this reader reads major "
                            f"{SUPPORTED_MAJOR} only")
    try:
        jsonschema.validate(manifest, schema or load_schema(), format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        raise ArtifactError(f"{MANIFEST} violates the schema at {where}: {exc.message}") from None
    if manifest["name"] != folder.name:
        raise ArtifactError(f"manifest name {manifest['name']!r} does not match folder {folder.name!r}")
    return manifest, hashlib.sha256(raw).hexdigest()


def verify_files(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """Check size and sha256 of every listed file; the first mismatch refuses the artifact."""
    root = folder.resolve()
    for rel, expected in sorted(files.items()):
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise ArtifactError(f"file {rel!r} points outside the artifact folder")
        if not path.is_file():
            raise ArtifactError(f"missing file {rel}")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise ArtifactError(f"size mismatch for {rel}: manifest {expected['bytes']} bytes, found {size}")
        actual = sha256_file(path)
        if actual != expected["sha256"]:
            raise ArtifactError(f"checksum mismatch for {rel}: manifest sha256 {expected['sha256'][:12]}..., "
                                f"file {actual[:12]}...")


def open_artifact(folder: Path, schema: dict[str, Any] | None = None) -> Artifact:
    """Validate the manifest and verify every checksum; only then may anything read the files. The HF folder's
    config, tokenizer and safetensors weights must be among the verified files (tasks require their own)."""
    manifest, digest = read_manifest(folder, schema)
    verify_files(folder, manifest["files"])
    artifact = Artifact(path=folder, manifest=manifest, manifest_sha256=digest)
    artifact.require(*(f"{manifest['hf_dir']}/{name}" for name in HF_FILES))
    return artifact
