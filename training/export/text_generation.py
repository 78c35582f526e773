"""Writing a causal LM as a `text-generation` artifact: HF folder, optional ONNX graphs verified against PyTorch
(the decoder with a KV cache: logits and greedy tokens; the attention graph: next-token logits and every layer's
attention weights), manifest.

One decoder graph serves prefill and decode: it always takes a past of length >= 1. The first call passes one
dummy past position (zeros, masked out by attention_mask = 0), so a past of length 0 never has to be exported.
Positions are explicit inputs, so the dummy slot does not shift them.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from transformers import AutoModelForCausalLM, DynamicCache

from contract import GENERATION, publish, staging_dir, write_manifest
from training.export import onnx_graph
from training.export.decoder_int8 import decoder_int8_variant
from training.export.onnx_graph import OPSET, ExportError

log = logging.getLogger(__name__)

VERIFY_PROMPTS = ["The", "It was a dark and stormy night, and the sea"]
VERIFY_STEPS = 16
ATTENTION_GRAPH = "model.attn.onnx"
ATTENTION_OUTPUTS = ["logits", "attentions"]
ATTENTION_ATOL = {"logits": 1e-3, "attentions": 1e-4, "routing": 0.0}
ATTENTION_VERIFY_TOKENS = 64


def io_names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
    present = [f"present_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
    return ["input_ids", "attention_mask", "position_ids", *past], ["logits", *present]


KVShape = tuple[int, int, int]
"""(layers, kv heads, head dim) of a decoder."""
Reference = Callable[[list[int], int], tuple[list[int], np.ndarray]]
"""(prompt, steps) -> PyTorch's greedy tokens and its logits over the prompt ``[1, seq, vocab]``."""


def kv_shape(config: Any) -> KVShape:
    """(layers, kv heads, head dim) of a decoder config (GPT-2 or Llama-style names)."""
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return layers, kv_heads, head_dim


class KVCacheGraph(nn.Module):
    """(input_ids, attention_mask, position_ids, *flat past) -> (logits, *flat present) over a DynamicCache."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cache = DynamicCache([(past[i], past[i + 1]) for i in range(0, len(past), 2)])
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache, use_cache=True)
        present = [t for layer in out.cache.layers for t in (layer.keys, layer.values)]
        return (out.logits, *present)


def example_inputs(vocab: int, kv: KVShape, batch: int = 1, seq: int = 3, past: int = 2) -> tuple[torch.Tensor, ...]:
    layers, heads, head_dim = kv
    ids = torch.randint(0, vocab, (batch, seq))
    mask = torch.ones((batch, past + seq), dtype=torch.long)
    mask[:, 0] = 0
    positions = torch.arange(past - 1, past - 1 + seq).expand(batch, seq).contiguous()
    kv = [torch.randn(batch, heads, past, head_dim) for _ in range(2 * layers)]
    return (ids, mask, positions, *kv)


def export_decoder(graph: nn.Module, path: Path, context_length: int, vocab: int,
                   kv: KVShape) -> tuple[list[str], list[str]]:
    """Dynamo export of a decoder graph (`KVCacheGraph`, or any module with its inputs and outputs) with dynamic
    batch, sequence and past axes; weights in the one file."""
    inputs, outputs = io_names(kv[0])
    batch = torch.export.Dim("batch", min=1, max=64)
    seq = torch.export.Dim("sequence", min=1, max=context_length)
    past = torch.export.Dim("past", min=1, max=context_length + 1)
    total = torch.export.Dim.DYNAMIC  # = past + sequence, inferred by the exporter
    past_shapes = tuple({0: batch, 2: past} for _ in inputs[3:])  # *past is one varargs tuple to torch.export
    shapes = ({0: batch, 1: seq}, {0: batch, 1: total}, {0: batch, 1: seq}, past_shapes)
    torch.onnx.export(graph.eval(), example_inputs(vocab, kv), str(path), dynamo=True,
                      external_data=False, opset_version=OPSET, input_names=inputs, output_names=outputs,
                      dynamic_shapes=shapes, verbose=False)
    return inputs, outputs


class OrtDecoder:
    """A minimal greedy decoding loop over the exported graph (verification only; the app has its own)."""

    def __init__(self, path: Path, kv: KVShape) -> None:
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.layers, self.heads, self.head_dim = kv

    def run(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray,
            past: list[np.ndarray]) -> list[np.ndarray]:
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        feed.update(zip(io_names(self.layers)[0][3:], past, strict=True))
        return list(self.session.run(None, feed))

    def greedy(self, prompt: list[int], steps: int) -> tuple[list[int], np.ndarray]:
        """``steps`` greedy tokens after ``prompt``, and the prefill logits."""
        past = [np.zeros((1, self.heads, 1, self.head_dim), np.float32) for _ in range(2 * self.layers)]
        ids = np.array([prompt], np.int64)
        mask = np.array([[0] + [1] * len(prompt)], np.int64)
        positions = np.arange(len(prompt), dtype=np.int64)[None]
        tokens: list[int] = []
        first: np.ndarray | None = None
        for _ in range(steps):
            logits, *past = self.run(ids, mask, positions, past)
            first = logits if first is None else first
            tokens.append(int(logits[0, -1].argmax()))
            ids = np.array([[tokens[-1]]], np.int64)
            mask = np.concatenate([mask, np.ones((1, 1), np.int64)], axis=1)
            positions = positions[:, -1:] + 1
        assert first is not None
        return tokens, first


def verify_prompts(tokenizer: Any, context_length: int) -> tuple[list[list[int]], int]:
    """The token ids of ``VERIFY_PROMPTS`` and the greedy steps to check after each (both within the context)."""
    steps = min(VERIFY_STEPS, context_length // 2)
    return [(tokenizer(text, add_special_tokens=False)["input_ids"] or [0])[: context_length - steps]
            for text in VERIFY_PROMPTS], steps


def torch_greedy(model: nn.Module, prompt: list[int], steps: int) -> tuple[list[int], np.ndarray]:
    """Reference: greedy decoding with the HF model's own DynamicCache."""
    tokens: list[int] = []
    cache = DynamicCache()
    ids = torch.tensor([prompt])
    first: np.ndarray | None = None
    with torch.no_grad():
        for _ in range(steps):
            out = model(input_ids=ids, cache=cache, use_cache=True)
            cache = out.cache
            first = out.logits.numpy() if first is None else first
            tokens.append(int(out.logits[0, -1].argmax()))
            ids = torch.tensor([[tokens[-1]]])
    assert first is not None
    return tokens, first


def verify_decoder(reference: Reference, path: Path, kv: KVShape, prompts: list[list[int]], steps: int = 16,
                   atol: float = 1e-3) -> float:
    """Max abs logit difference ORT vs PyTorch (``reference``) over ``prompts``; raise if above ``atol`` or if
    greedy tokens differ."""
    decoder = OrtDecoder(path, kv)
    worst = 0.0
    for prompt in prompts:
        want_tokens, want_logits = reference(prompt, steps)
        got_tokens, got_logits = decoder.greedy(prompt, steps)
        worst = max(worst, float(np.abs(want_logits - got_logits).max()))
        if got_tokens != want_tokens:
            raise ExportError(f"{path.name}: greedy tokens differ from PyTorch for prompt {prompt[:8]}...: "
                              f"ORT {got_tokens} vs torch {want_tokens}")
    if worst > atol:
        raise ExportError(f"{path.name}: ORT and PyTorch logits differ by {worst:.2e} (tolerance {atol:.0e})")
    return worst


class NextTokenAttentionGraph(nn.Module):
    """(input_ids, attention_mask) -> next-token logits ``[batch, vocab]`` (the logits at each row's last
    attended position, so right padding is allowed) and every layer's attention weights stacked as
    ``[layers, batch, heads, query, key]`` (the model must use eager attention). No KV cache."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
        last = attention_mask.sum(dim=1) - 1
        logits = out.logits[torch.arange(input_ids.shape[0]), last]
        return logits, torch.stack(out.attentions)


def export_attention(graph: nn.Module, path: Path, context_length: int, vocab: int,
                     outputs: list[str] = ATTENTION_OUTPUTS) -> dict[str, float]:
    """Export an attention graph (`NextTokenAttentionGraph`, or any module with its inputs and ``outputs``;
    dynamic batch and sequence, weights in the one file) and verify it against PyTorch on padded and unpadded
    inputs of up to ``ATTENTION_VERIFY_TOKENS`` tokens; returns the max abs difference per output (raises
    `ExportError` beyond ``ATTENTION_ATOL``)."""
    onnx_graph.export_graph(graph, path, outputs, context_length)
    cases = onnx_graph.sample_inputs(vocab, min(context_length, ATTENTION_VERIFY_TOKENS))
    return onnx_graph.verify(graph, path, cases, outputs, ATTENTION_ATOL)


def export_lm(model: Any, tokenizer: Any, models_dir: Path, name: str, *, base_model: str, context_length: int,
              metrics: dict[str, Any], training: dict[str, Any], onnx: bool = True,
              curve: Path | None = None, int8: Path | None = None) -> Path:
    """HF folder (+ model.onnx verified against PyTorch: logits and 16 greedy tokens; + model.attn.onnx verified:
    next-token logits and attentions; + with ``int8``, a text file, the weight-only int8 decoder measured on it,
    `training.export.decoder_int8`) + manifest, published atomically."""
    def save(hf: Path) -> None:
        model.save_pretrained(hf, safe_serialization=True)

    def graphs(hf: Path, path: Path) -> dict[str, Any]:
        block = _export_onnx(hf, path, tokenizer, context_length)
        if int8 is not None:
            log.info("exporting the int8 decoder")
            block["variants"] = {"int8": decoder_int8_variant(path.parent, int8.read_text(), context_length)}
        return block

    return publish_lm(models_dir, name, tokenizer, save, graphs if onnx else None, base_model=base_model,
                      context_length=context_length, metrics=metrics, training=training, curve=curve)


def publish_lm(models_dir: Path, name: str, tokenizer: Any, save: Callable[[Path], None],
               graphs: Callable[[Path, Path], dict[str, Any]] | None, *, base_model: str, context_length: int,
               metrics: dict[str, Any], training: dict[str, Any], curve: Path | None = None,
               extra: dict[str, Any] | None = None) -> Path:
    """The text-generation artifact of any causal LM: ``save(hf)`` writes its weights and config, the tokenizer
    is saved beside them, ``graphs(hf, model.onnx path)`` exports and verifies the ONNX graphs and returns the
    manifest's ``onnx`` block; ``extra``: more manifest fields. Built in a staging folder, published atomically."""
    stage = staging_dir(models_dir, name)
    try:
        hf = stage / "hf"
        save(hf)
        tokenizer.save_pretrained(hf)
        generation: dict[str, Any] = {
            "context_length": context_length,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        }
        fields: dict[str, Any] = {"name": name, "task": GENERATION, "base_model": base_model,
                                  "max_length": context_length, "generation": generation, "metrics": metrics,
                                  "training": training, **(extra or {})}
        if graphs is not None:
            fields["onnx"] = graphs(hf, stage / "model.onnx")
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
    kv, vocab = kv_shape(eager.config), int(eager.config.vocab_size)
    log.info("exporting the ONNX KV-cache decoder (%d layers)", kv[0])
    inputs, outputs = export_decoder(KVCacheGraph(eager), path, context_length, vocab, kv)
    diff = verify_decoder(lambda prompt, steps: torch_greedy(eager, prompt, steps), path, kv,
                          *verify_prompts(tokenizer, context_length))
    log.info("ORT vs PyTorch: max abs logit diff %.1e, greedy tokens identical", diff)
    attention = path.with_name(ATTENTION_GRAPH)
    log.info("exporting the ONNX attention graph")
    attention_diffs = export_attention(NextTokenAttentionGraph(eager), attention, context_length, vocab)
    log.info("attention graph, ORT vs PyTorch: max abs diff next-token logits %.1e, attentions %.1e",
             attention_diffs["logits"], attention_diffs["attentions"])
    return {"model": path.name, "opset": OPSET, "inputs": inputs, "outputs": outputs,
            "attention": attention.name, "attention_outputs": ATTENTION_OUTPUTS,
            "max_abs_diff": {"logits": diff, "attention_logits": attention_diffs["logits"],
                             "attentions": attention_diffs["attentions"]}}
