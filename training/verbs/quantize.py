"""`python -m training quantize`: add (or redo) the int8 variant of a text-classification artifact's ONNX graph,
measured on the test split, and republish the folder atomically (see training/export/int8.py for the method)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from contract import (
    MANIFEST,
    SCHEMA_VERSION,
    TEXT_CLASSIFICATION,
    file_table,
    open_artifact,
    publish,
    staging_dir,
    validate_manifest,
)
from training.config import DataConfig
from training.export.int8 import INT8, int8_variant

log = logging.getLogger(__name__)


def _link_tree(source: Path, target: Path, skip: set[str]) -> None:
    """Hard links (copies across filesystems) of every file of ``source`` but ``skip``, under ``target``."""
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        if not path.is_file() or rel in skip:
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target / rel)
        except OSError:
            shutil.copy2(path, target / rel)


def quantize(artifact: Path, data: DataConfig | None = None, threads: int | None = 1) -> Path:
    """Add (or redo) the int8 ONNX variant of a text-classification artifact, measured on the test split.

    Writes model.int8.onnx and its metrics (``onnx.variants.int8``) and checksums into the manifest (schema
    version and task name brought to the current ones; every other entry, ``created_at`` and ``metrics`` kept);
    the folder is replaced atomically. Returns the folder.

    Args:
        artifact: a text-classification (or legacy sentiment) artifact folder (models/<name>).
        data: where the labelled test split is (data_dir/test_file; default SST-2's test.tsv).
        threads: ONNX Runtime intra-op threads for the accuracy runs (None = all cores).
    """
    artifact = Path(artifact)
    opened = open_artifact(artifact)
    if opened.task != TEXT_CLASSIFICATION:
        raise ValueError(f"{artifact}: only {TEXT_CLASSIFICATION} artifacts have an int8 variant, not {opened.task!r}")
    manifest = opened.manifest
    stage = staging_dir(artifact.parent, artifact.name)
    try:
        _link_tree(artifact, stage, skip={MANIFEST, INT8})
        variant = int8_variant(stage, opened.labels, opened.max_length, data or DataConfig(), threads)
        onnx = {**opened.onnx, "variants": {**opened.onnx.get("variants", {}), "int8": variant}}
        updated = {**manifest, "schema_version": SCHEMA_VERSION, "task": opened.task, "onnx": onnx,
                   "files": file_table(stage)}
        validate_manifest(updated)
        (stage / MANIFEST).write_text(json.dumps(updated, indent=2) + "\n")
        final = publish(stage, artifact)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("wrote %s/%s (%.1f MiB)", final, INT8, (final / INT8).stat().st_size / 2**20)
    return final
