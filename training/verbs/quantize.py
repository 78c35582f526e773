"""`python -m training quantize`: add (or redo) the int8 variant of an artifact's ONNX graph and republish the
folder atomically: a classifier's measured on the test split (training/export/int8.py), a decoder's on a text
against its fp32 graph (training/export/decoder_int8.py)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from contract import (
    GENERATION,
    MANIFEST,
    SCHEMA_VERSION,
    TEXT_CLASSIFICATION,
    file_table,
    open_artifact,
    publish,
    staging_dir,
    validate_manifest,
)
from training.config import DEFAULT_LM_EVAL_TEXT, DataConfig
from training.export.decoder_int8 import decoder_int8_variant
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


def quantize(artifact: Path, data: DataConfig | None = None, text: Path = DEFAULT_LM_EVAL_TEXT, text_tokens: int = 512,
             threads: int | None = 1) -> Path:
    """Add (or redo) the int8 ONNX variant of a text-classification or text-generation artifact, measured.

    A classifier: dynamic int8 (weights per output channel), test accuracy on the labelled test split. A
    KV-cache decoder: weight-only 8-bit MatMuls, perplexity and next-token agreement with the fp32 graph on a
    text. Writes model.int8.onnx and its metrics (``onnx.variants.int8``) and checksums into the manifest (schema
    version and task name brought to the current ones; every other entry, ``created_at`` and ``metrics`` kept);
    the folder is replaced atomically. Returns the folder.

    Args:
        artifact: a text-classification (or legacy sentiment) or text-generation artifact folder (models/<name>).
        data: classifiers: where the labelled test split is (data_dir/test_file; default SST-2's test.tsv).
        text: decoders: the text that measures the int8 graph against the fp32 one.
        text_tokens: decoders: how many of its first tokens.
        threads: ONNX Runtime intra-op threads for the measurements (None = all cores).
    """
    artifact = Path(artifact)
    opened = open_artifact(artifact)
    if opened.task not in (TEXT_CLASSIFICATION, GENERATION):
        raise ValueError(f"{artifact}: only {TEXT_CLASSIFICATION} and {GENERATION} artifacts have an int8 variant, "
                         f"not {opened.task!r}")
    if not opened.onnx:
        raise ValueError(f"{artifact}: no ONNX graph to quantise (exported without one)")
    manifest = opened.manifest
    stage = staging_dir(artifact.parent, artifact.name)
    try:
        _link_tree(artifact, stage, skip={MANIFEST, INT8})
        if opened.task == GENERATION:
            variant = decoder_int8_variant(stage, Path(text).read_text(), int(manifest["generation"]["context_length"]),
                                           text_tokens, threads)
        else:
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
