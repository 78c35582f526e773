"""Writing a text classifier as a `text-classification` artifact: HF folder, the logits graph (model.onnx), the
attention graph (model.attn.onnx), optionally the int8 graph, each verified against PyTorch; manifest."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from contract import TEXT_CLASSIFICATION, publish, staging_dir, write_manifest
from training.config import DataConfig
from training.export import onnx_graph
from training.export.int8 import int8_variant

log = logging.getLogger(__name__)

# Attention weights are probabilities drawn as maps: 1e-3 is far below what a map shows. The 12-layer MPNet
# teacher's attention graph measured 1.42e-4 against PyTorch in one export (fp32, CPU), over a 1e-4 bound.
ATOL = {"logits": 1e-3, "attentions": 1e-3}


class LogitsGraph(nn.Module):
    """(input_ids, attention_mask) -> logits [batch, labels]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits


class AttentionGraph(nn.Module):
    """Logits plus every layer's attention weights stacked as [layers, batch, heads, query, key]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
        return out.logits, torch.stack(out.attentions)


def export_classifier(model: Any, tokenizer: Any, models_dir: Path, name: str, *, labels: list[str],
                      base_model: str, max_length: int, metrics: dict[str, Any], training: dict[str, Any],
                      extra: dict[str, Any] | None = None, curve: Path | None = None,
                      int8: DataConfig | None = None) -> Path:
    """HF folder + model.onnx + model.attn.onnx + manifest.json, verified, then published atomically.

    ``int8``: also write model.int8.onnx, measured on this data's test split (`training.export.int8`).
    """
    stage = staging_dir(models_dir, name)
    try:
        hf = stage / "hf"
        model.save_pretrained(hf, safe_serialization=True)
        tokenizer.save_pretrained(hf)
        eager = AutoModelForSequenceClassification.from_pretrained(hf, attn_implementation="eager").eval()
        cases = onnx_graph.sample_inputs(eager.config.vocab_size, max_length)
        log.info("exporting %s: logits graph", name)
        onnx_graph.export_graph(LogitsGraph(eager), stage / "model.onnx", ["logits"], max_length)
        diffs = onnx_graph.verify(LogitsGraph(eager), stage / "model.onnx", cases, ["logits"], ATOL)
        log.info("exporting %s: attention graph", name)
        attn_outputs = ["logits", "attentions"]
        graph = AttentionGraph(eager)
        onnx_graph.export_graph(graph, stage / "model.attn.onnx", attn_outputs, max_length)
        attn_diffs = onnx_graph.verify(graph, stage / "model.attn.onnx", cases, attn_outputs, ATOL)
        if curve is not None and curve.is_file():
            shutil.copy(curve, stage / "training_curve.png")
        fields: dict[str, Any] = {
            "name": name,
            "task": TEXT_CLASSIFICATION,
            "labels": labels,
            "base_model": base_model,
            "max_length": max_length,
            "onnx": {
                "model": "model.onnx",
                "attention": "model.attn.onnx",
                "opset": onnx_graph.OPSET,
                "inputs": onnx_graph.INPUTS,
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
