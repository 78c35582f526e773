"""One ONNX graph over (input_ids, attention_mask): dynamo export with dynamic batch and sequence axes, sample
inputs of several shapes (padded rows too), and ORT-vs-PyTorch verification per output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

OPSET = 18
INPUTS = ["input_ids", "attention_mask"]


class ExportError(RuntimeError):
    """The exported graph disagrees with PyTorch beyond tolerance."""


def export_graph(graph: nn.Module, path: Path, outputs: list[str], max_length: int) -> None:
    """Dynamo export with dynamic batch and sequence axes, weights inside the one file."""
    example = torch.ones((2, 8), dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("sequence", min=1, max=max_length)
    shapes = {name: {0: batch, 1: seq} for name in INPUTS}
    torch.onnx.export(graph.eval(), (example, example.clone()), str(path), dynamo=True, external_data=False,
                      opset_version=OPSET, input_names=INPUTS, output_names=outputs, dynamic_shapes=shapes,
                      verbose=False)


def sample_inputs(vocab_size: int, max_length: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Inputs of several shapes, with padding in some rows."""
    rng = np.random.default_rng(seed)
    cases = []
    for batch, seq in [(1, 1), (1, 7), (3, 19), (2, max_length)]:
        ids = rng.integers(1, vocab_size, size=(batch, seq), dtype=np.int64)
        mask = np.ones((batch, seq), dtype=np.int64)
        if batch > 1:
            mask[0, seq // 2:] = 0
            ids[0, seq // 2:] = 0
        cases.append({"input_ids": ids, "attention_mask": mask})
    return cases


def verify(graph: nn.Module, onnx_path: Path, cases: list[dict[str, np.ndarray]], outputs: list[str],
           atol: dict[str, float]) -> dict[str, float]:
    """Max abs difference per output between ORT and PyTorch over ``cases``; raise beyond ``atol``."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = dict.fromkeys(outputs, 0.0)
    graph.eval()
    for case in cases:
        with torch.no_grad():
            expected = graph(*(torch.from_numpy(case[name]) for name in INPUTS))
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(outputs, case)
        for name, want, have in zip(outputs, expected, got, strict=True):
            # padded query rows are ignored by every consumer; compare only real positions
            diff = np.abs(want.numpy() - have)
            if name == "attentions":
                diff = diff * case["attention_mask"][None, :, None, :, None]
            elif name == "routing":  # [layers, batch, seq, top_k]
                diff = diff * case["attention_mask"][None, :, :, None]
            worst[name] = max(worst[name], float(diff.max()))
    for name, value in worst.items():
        if value > atol[name]:
            raise ExportError(f"{onnx_path.name}: ORT and PyTorch differ on {name!r} by {value:.2e} "
                              f"(tolerance {atol[name]:.0e})")
    return worst
