"""`python -m training export`: write a classifier as a self-describing artifact in models/<name>/."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from training import onnx_graphs
from training.config import DataConfig
from training.manifest import publish, staging_dir, write_manifest
from training.quantize import int8_variant

log = logging.getLogger(__name__)

ATOL = {"logits": 1e-3, "attentions": 1e-4}


def export_classifier(model: Any, tokenizer: Any, models_dir: Path, name: str, *, labels: list[str],
                      base_model: str, max_length: int, metrics: dict[str, Any], training: dict[str, Any],
                      extra: dict[str, Any] | None = None, curve: Path | None = None,
                      int8: DataConfig | None = None) -> Path:
    """HF folder + model.onnx + model.attn.onnx + manifest.json, verified, then published atomically.

    ``int8``: also write model.int8.onnx, measured on this data's test split (`training.quantize`).
    """
    stage = staging_dir(models_dir, name)
    try:
        hf = stage / "hf"
        model.save_pretrained(hf, safe_serialization=True)
        tokenizer.save_pretrained(hf)
        eager = AutoModelForSequenceClassification.from_pretrained(hf, attn_implementation="eager").eval()
        cases = onnx_graphs.sample_inputs(eager.config.vocab_size, max_length)
        log.info("exporting %s: logits graph", name)
        onnx_graphs.export_graph(onnx_graphs.LogitsGraph(eager), stage / "model.onnx", ["logits"], max_length)
        diffs = onnx_graphs.verify(onnx_graphs.LogitsGraph(eager), stage / "model.onnx", cases, ["logits"], ATOL)
        log.info("exporting %s: attention graph", name)
        attn_outputs = ["logits", "attentions"]
        graph = onnx_graphs.AttentionGraph(eager)
        onnx_graphs.export_graph(graph, stage / "model.attn.onnx", attn_outputs, max_length)
        attn_diffs = onnx_graphs.verify(graph, stage / "model.attn.onnx", cases, attn_outputs, ATOL)
        if curve is not None and curve.is_file():
            shutil.copy(curve, stage / "training_curve.png")
        fields: dict[str, Any] = {
            "name": name,
            "task": "sentiment",
            "labels": labels,
            "base_model": base_model,
            "max_length": max_length,
            "onnx": {
                "model": "model.onnx",
                "attention": "model.attn.onnx",
                "opset": onnx_graphs.OPSET,
                "inputs": onnx_graphs.INPUTS,
                "outputs": ["logits"],
                "attention_outputs": attn_outputs,
                "max_abs_diff": {"logits": max(diffs["logits"], attn_diffs["logits"]),
                                 "attentions": attn_diffs["attentions"]},
            },
            "metrics": metrics,
            "training": training,
            **(extra or {}),
        }
        if int8 is not None:
            log.info("exporting %s: int8 graph", name)
            fields["onnx"]["variants"] = {"int8": int8_variant(stage, labels, max_length, int8,
                                                               torch.get_num_threads())}
        write_manifest(stage, fields)
        final = publish(stage, models_dir / name)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("wrote %s (ORT max abs diff: logits %.1e, attentions %.1e)", final, diffs["logits"],
             attn_diffs["attentions"])
    return final


def export(checkpoint: Path, name: str = "sentiment-minilm", models_dir: Path = Path("models"),
           max_length: int = 128) -> Path:
    """Export a Lightning checkpoint of `training sentiment` (metrics are taken from the checkpoint's run).

    Args:
        checkpoint: a .ckpt written by `python -m training sentiment` (runs/<name>/checkpoints/...).
        name: artifact folder name under models_dir.
        models_dir: where artifacts live.
        max_length: tokens kept per text (longer inputs are truncated).
    """
    from training.classifier import SentimentClassifier
    from training.sentiment import read_run_metrics

    module = SentimentClassifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    hp = dict(module.hparams)
    tokenizer = AutoTokenizer.from_pretrained(hp["base_model"])
    run_dir = Path(checkpoint).resolve().parent.parent
    metrics = read_run_metrics(run_dir)
    return export_classifier(module.model, tokenizer, Path(models_dir), name, labels=list(hp["labels"]),
                             base_model=hp["base_model"], max_length=max_length, metrics=metrics,
                             training={"checkpoint": str(checkpoint), **hp}, curve=run_dir / "training_curve.png")
