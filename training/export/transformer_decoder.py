"""Writing a from-scratch `TransformerLM` (transformer/) as a text-generation artifact that the app serves as it
serves GPT-2: an HF-style folder (config.json: the `TransformerConfig` with ``"architecture": "transformer-lm"``;
model.safetensors; the tokenizer), the KV-cache decoder ``model.onnx`` and the attention graph ``model.attn.onnx``
of the decoder contract (models/README.md; a Mixture of Experts adds the attention graph's ``routing`` output),
both verified against PyTorch as GPT-2's are (logits, 16 greedy tokens, attentions), and the manifest's
``architecture`` block (schema 1.5)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from training.export.onnx_graph import OPSET
from training.export.text_generation import (
    ATTENTION_GRAPH,
    ATTENTION_OUTPUTS,
    KVShape,
    export_attention,
    export_decoder,
    publish_lm,
    verify_decoder,
    verify_prompts,
)
from transformer.model import ARCHITECTURE, TransformerConfig, TransformerLM

log = logging.getLogger(__name__)

ROUTING = "routing"
"""The attention graph's extra output for a Mixture of Experts: ``[layers, batch, seq, top_k]`` expert ids."""


class DecoderGraph(nn.Module):
    """(input_ids, attention_mask, position_ids, *flat past) -> (logits, *flat present): the model's own forward."""

    def __init__(self, model: TransformerLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids, attention_mask, position_ids, list(past))
        return (out.logits, *out.present)


class AttentionGraph(nn.Module):
    """(input_ids, attention_mask) -> next-token logits ``[batch, vocab]`` at each row's last attended position,
    attentions ``[layers, batch, heads, seq, seq]`` and, for a Mixture of Experts, the routing ``[layers, batch,
    seq, top_k]``. No KV cache."""

    def __init__(self, model: TransformerLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids, attention_mask, output_attentions=True)
        logits = out.logits[torch.arange(input_ids.shape[0]), attention_mask.sum(dim=1) - 1]
        experts = out.experts
        return (logits, out.attentions) if experts is None else (logits, out.attentions, experts)


def save_transformer(model: TransformerLM, hf: Path) -> None:
    """config.json and model.safetensors (the tied LM head stored once)."""
    hf.mkdir(parents=True, exist_ok=True)
    save_model(model, str(hf / "model.safetensors"))
    (hf / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")


def load_transformer(hf: Path) -> TransformerLM:
    model = TransformerLM(TransformerConfig.from_dict(json.loads((hf / "config.json").read_text())))
    load_model(model, str(hf / "model.safetensors"))
    return model.eval()


def architecture(model: TransformerLM) -> dict[str, Any]:
    """The manifest's ``architecture`` block."""
    config, counts = model.config, model.parameter_counts()
    block: dict[str, Any] = {"name": ARCHITECTURE, "layers": config.n_layers, "heads": config.n_heads,
                             "d_model": config.d_model, "d_ff": config.d_ff, "position": config.position,
                             "parameters": counts["total"], "active_parameters": counts["active"]}
    if config.n_experts:
        block.update(experts=config.n_experts, top_k=config.top_k, capacity_factor=config.capacity_factor)
    return block


def export_transformer_lm(model: TransformerLM, tokenizer: Any, models_dir: Path, name: str, *,
                          metrics: dict[str, Any], training: dict[str, Any], onnx: bool = True,
                          curve: Path | None = None) -> Path:
    """The artifact ``models_dir/name``, published atomically (ONNX graphs exported from the saved weights)."""
    def graphs(hf: Path, path: Path) -> dict[str, Any]:
        return _export_onnx(hf, path, tokenizer)

    kind = f"{model.config.n_experts}-expert MoE" if model.config.n_experts else "dense"
    return publish_lm(models_dir, name, tokenizer, lambda hf: save_transformer(model, hf), graphs if onnx else None,
                      base_model=f"{ARCHITECTURE} ({kind}, from scratch)",
                      context_length=model.config.context_length, metrics=metrics, training=training, curve=curve,
                      extra={"architecture": architecture(model)})


def greedy(model: TransformerLM, prompt: list[int], steps: int) -> tuple[list[int], Any]:
    """PyTorch's reference for the ONNX decoder: the model's own `generate` (greedy) and its prompt logits."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        logits = model(ids).logits.numpy()
        return model.generate(ids, steps, temperature=0)[0, len(prompt):].tolist(), logits


def _export_onnx(hf: Path, path: Path, tokenizer: Any) -> dict[str, Any]:
    model = load_transformer(hf)  # what the artifact holds
    config = model.config
    kv: KVShape = (config.n_layers, config.n_heads, config.d_model // config.n_heads)
    log.info("exporting the ONNX KV-cache decoder (%d layers)", config.n_layers)
    inputs, outputs = export_decoder(DecoderGraph(model), path, config.context_length, config.vocab_size, kv)
    diff = verify_decoder(lambda prompt, steps: greedy(model, prompt, steps), path, kv,
                          *verify_prompts(tokenizer, config.context_length))
    log.info("ORT vs PyTorch: max abs logit diff %.1e, greedy tokens identical", diff)
    attention = path.with_name(ATTENTION_GRAPH)
    names = [*ATTENTION_OUTPUTS, ROUTING] if config.n_experts else ATTENTION_OUTPUTS
    log.info("exporting the ONNX attention graph (outputs %s)", ", ".join(names))
    diffs = export_attention(AttentionGraph(model), attention, config.context_length, config.vocab_size, names)
    log.info("attention graph, ORT vs PyTorch: max abs diff next-token logits %.1e, attentions %.1e",
             diffs["logits"], diffs["attentions"])
    return {"model": path.name, "opset": OPSET, "inputs": inputs, "outputs": outputs, "attention": attention.name,
            "attention_outputs": names,
            "max_abs_diff": {"logits": diff, "attention_logits": diffs["logits"], "attentions": diffs["attentions"]}}
