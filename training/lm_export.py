"""Write a causal LM as a `text-generation` artifact: HF folder, optional ONNX graphs (KV-cache decoder and
attention graph), manifest."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM

from training import lm_onnx
from training.manifest import publish, staging_dir, write_manifest
from training.onnx_graphs import OPSET

log = logging.getLogger(__name__)

VERIFY_PROMPTS = ["The", "It was a dark and stormy night, and the sea"]
VERIFY_STEPS = 16
ATTENTION_GRAPH = "model.attn.onnx"


def export_lm(model: Any, tokenizer: Any, models_dir: Path, name: str, *, base_model: str, context_length: int,
              metrics: dict[str, Any], training: dict[str, Any], onnx: bool = True,
              curve: Path | None = None) -> Path:
    """HF folder (+ model.onnx verified against PyTorch: logits and 16 greedy tokens; + model.attn.onnx verified:
    next-token logits and attentions) + manifest, published atomically."""
    stage = staging_dir(models_dir, name)
    try:
        hf = stage / "hf"
        model.save_pretrained(hf, safe_serialization=True)
        tokenizer.save_pretrained(hf)
        generation: dict[str, Any] = {
            "context_length": context_length,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        }
        fields: dict[str, Any] = {"name": name, "task": "text-generation", "base_model": base_model,
                                  "max_length": context_length, "generation": generation, "metrics": metrics,
                                  "training": training}
        if onnx:
            fields["onnx"] = _export_onnx(hf, stage / "model.onnx", tokenizer, context_length)
        if curve is not None and curve.is_file():
            shutil.copy(curve, stage / "training_curve.png")
        write_manifest(stage, fields)
        final = publish(stage, models_dir / name)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("wrote %s", final)
    return final


def _export_onnx(hf: Path, path: Path, tokenizer: Any, context_length: int) -> dict[str, Any]:
    eager = AutoModelForCausalLM.from_pretrained(hf, attn_implementation="eager").eval()
    log.info("exporting the ONNX KV-cache decoder (%d layers)", lm_onnx.kv_shape(eager.config)[0])
    inputs, outputs = lm_onnx.export_decoder(eager, path, context_length)
    steps = min(VERIFY_STEPS, context_length // 2)
    prompts = [(tokenizer(text, add_special_tokens=False)["input_ids"] or [0])[: context_length - steps]
               for text in VERIFY_PROMPTS]
    diff = lm_onnx.verify_decoder(eager, path, prompts, steps)
    log.info("ORT vs PyTorch: max abs logit diff %.1e, greedy tokens identical", diff)
    attention = path.with_name(ATTENTION_GRAPH)
    log.info("exporting the ONNX attention graph")
    attention_diffs = lm_onnx.export_attention(eager, attention, context_length)
    log.info("attention graph, ORT vs PyTorch: max abs diff next-token logits %.1e, attentions %.1e",
             attention_diffs["logits"], attention_diffs["attentions"])
    return {"model": path.name, "opset": OPSET, "inputs": inputs, "outputs": outputs,
            "attention": attention.name, "attention_outputs": lm_onnx.ATTENTION_OUTPUTS,
            "max_abs_diff": {"logits": diff, "attention_logits": attention_diffs["logits"],
                             "attentions": attention_diffs["attentions"]}}
