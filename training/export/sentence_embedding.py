"""Writing a sentence encoder as a `sentence-embedding` artifact: HF folder (encoder weights and tokenizer),
model.onnx computing what sentence-transformers computes for all-MiniLM-L6-v2 (the last hidden state averaged
over the attention mask, then L2-normalised), verified twice; manifest.

The two checks at export: ORT against the PyTorch module that was exported, on random ids of several shapes with
padded rows; and ORT against a reference computed apart with plain transformers (a fresh AutoModel from the
written HF folder with its default attention, mask-weighted mean, `torch.nn.functional.normalize`) on real
sentences tokenised by the written tokenizer. Either beyond tolerance fails the export.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

from contract import SENTENCE_EMBEDDING, publish, staging_dir, write_manifest
from training.export import onnx_graph
from training.export.onnx_graph import ExportError

log = logging.getLogger(__name__)

OUTPUTS = ["embeddings"]
ATOL = {"embeddings": 1e-5}
"""ORT vs the exported PyTorch module (random ids, padded rows)."""
REFERENCE_ATOL = 1e-5
"""ORT vs the independent transformers reference (real sentences)."""
REFERENCE_SENTENCES = [
    "A man is playing a guitar.",
    "The new movie is awesome",
    "It was a dark and stormy night; the rain fell in torrents, except at occasional intervals.",
    "ok",
    "Sentence embeddings map text to vectors, so that texts with similar meanings lie close together. " * 40,
]
"""Different lengths in one padded batch; the last one is longer than any max_length (truncated)."""


class MeanPooledEmbeddings(nn.Module):
    """(input_ids, attention_mask) -> embeddings [batch, hidden]: sentence-transformers' Pooling (mean tokens)
    then Normalize, over an HF encoder's last hidden state."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden: torch.Tensor = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / torch.clamp(mask.sum(dim=1), min=1e-9)
        return nn.functional.normalize(mean, p=2, dim=1)


def reference_embeddings(hf_dir: Path, sentences: list[str], max_length: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings of ``sentences`` computed with plain transformers from the HF folder, and the int64 feed
    (input_ids, attention_mask) that produced them."""
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModel.from_pretrained(hf_dir, dtype=torch.float32).eval()
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    weights = batch["attention_mask"].to(torch.float32)
    mean = torch.einsum("bsh,bs->bh", hidden, weights) / weights.sum(dim=1, keepdim=True)
    embeddings = torch.nn.functional.normalize(mean, p=2, dim=1)
    feed = {name: batch[name].numpy().astype(np.int64) for name in onnx_graph.INPUTS}
    return embeddings.numpy(), feed


def check_reference(hf_dir: Path, onnx_path: Path, max_length: int,
                    sentences: list[str] = REFERENCE_SENTENCES) -> float:
    """Max abs difference between ORT's embeddings and `reference_embeddings`; `ExportError` beyond
    ``REFERENCE_ATOL``."""
    want, feed = reference_embeddings(hf_dir, sentences, max_length)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(OUTPUTS, feed)[0]
    if got.shape != want.shape:
        raise ExportError(f"{onnx_path.name}: embeddings of shape {got.shape}, reference {want.shape}")
    diff = float(np.abs(got - want).max())
    if diff > REFERENCE_ATOL:
        raise ExportError(f"{onnx_path.name}: ORT and the transformers reference differ by {diff:.2e} "
                          f"(tolerance {REFERENCE_ATOL:.0e})")
    return diff


def export_embedding(model: Any, tokenizer: Any, models_dir: Path, name: str, *, base_model: str,
                     max_length: int, training: dict[str, Any]) -> Path:
    """HF folder + model.onnx (input_ids, attention_mask -> embeddings) verified against PyTorch and against the
    transformers reference + manifest.json, published atomically."""
    stage = staging_dir(models_dir, name)
    try:
        hf = stage / "hf"
        model.save_pretrained(hf, safe_serialization=True)
        tokenizer.save_pretrained(hf)
        encoder = AutoModel.from_pretrained(hf, attn_implementation="eager", dtype=torch.float32).eval()
        graph = MeanPooledEmbeddings(encoder)
        path = stage / "model.onnx"
        log.info("exporting %s: embeddings graph", name)
        onnx_graph.export_graph(graph, path, OUTPUTS, max_length)
        cases = onnx_graph.sample_inputs(int(encoder.config.vocab_size), max_length)
        diffs = onnx_graph.verify(graph, path, cases, OUTPUTS, ATOL)
        reference = check_reference(hf, path, max_length)
        fields: dict[str, Any] = {
            "name": name,
            "task": SENTENCE_EMBEDDING,
            "base_model": base_model,
            "max_length": max_length,
            "embedding": {"dimension": int(encoder.config.hidden_size), "pooling": "mean", "normalize": True,
                          "max_abs_diff_reference": reference},
            "onnx": {"model": path.name, "inputs": onnx_graph.INPUTS, "outputs": OUTPUTS,
                     "opset": onnx_graph.OPSET, "max_abs_diff": diffs},
            "metrics": {},
            "training": training,
        }
        write_manifest(stage, fields)
        final = publish(stage, models_dir / name)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("wrote %s (max abs diff: ORT vs PyTorch %.1e, ORT vs transformers reference %.1e)", final,
             diffs["embeddings"], reference)
    return final
