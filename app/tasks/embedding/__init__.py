"""Sentence embedding: one vector per text, the token states mean-pooled over the attention mask and L2-normalised
(as the artifact's manifest ``embedding`` block says, like sentence-transformers). Batched.

ONNX Runtime runs ``model.onnx`` (pooling and normalisation are in the graph, output ``embeddings``); PyTorch runs
the HF encoder and pools here. Texts beyond ``max_length`` tokens are truncated and flagged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from app.runtimes import Runtime
from app.tasks.base import BatchModel, Task
from app.tasks.text import WARMUP_SENTENCE, WARMUP_TEXTS, Batch, TextEncoder, trace_inputs
from contract import SENTENCE_EMBEDDING, Artifact

if TYPE_CHECKING:
    from app.runtimes.onnx import OnnxRuntime
    from app.runtimes.torch import TorchRuntime

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Embedding:
    vector: Vectors
    tokens: int
    """Tokens the model read (special tokens included)."""
    truncated: bool


class Embedder(BatchModel):
    def __init__(self, artifact: Artifact, runtime: Runtime) -> None:
        super().__init__(artifact, runtime)
        self.spec = dict(artifact.manifest["embedding"])
        self._encoder: TextEncoder | None = None
        self._forward: Callable[[Batch], Vectors] | None = None

    @property
    def dimension(self) -> int:
        return int(self.spec["dimension"])

    def load(self) -> None:
        self._encoder = TextEncoder(self.artifact.hf_dir, self.artifact.max_length)
        if self.runtime.name == "onnx":
            self._forward = _onnx_forward(self.artifact, cast("OnnxRuntime", self.runtime))
        else:
            self._forward = _torch_forward(self.artifact, cast("TorchRuntime", self.runtime), self.spec)

    def warmup(self) -> None:
        self.predict(WARMUP_TEXTS)
        self.measure_call_overhead(WARMUP_SENTENCE)

    def predict(self, texts: Sequence[str]) -> list[Embedding]:
        if self._encoder is None or self._forward is None:
            raise RuntimeError(f"{self.artifact.name}: used before load()")
        batch = self._encoder.encode(texts)
        vectors = np.asarray(self._forward(batch), dtype=np.float32)
        if vectors.shape != (len(texts), self.dimension):
            raise ValueError(f"{self.artifact.name}: embeddings of shape {vectors.shape} for {len(texts)} texts")
        counts = batch.attention_mask.sum(axis=1)
        return [Embedding(vector, int(count), cut)
                for vector, count, cut in zip(vectors, counts, batch.truncated, strict=True)]

    def _info(self) -> dict[str, Any]:
        return {"dimension": self.dimension, "pooling": self.spec["pooling"], "normalize": self.spec["normalize"],
                "call_overhead": self.call_overhead}


def _onnx_forward(artifact: Artifact, runtime: OnnxRuntime) -> Callable[[Batch], Vectors]:
    """``model.onnx`` pools and normalises in the graph: its output ``embeddings`` is the result."""
    artifact.require(str(artifact.onnx["model"]))
    session = runtime.session(artifact.onnx_model, ("input_ids", "attention_mask"))

    def forward(batch: Batch) -> Vectors:
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        return np.asarray(runtime.run(session, ["embeddings"], feed)[0], dtype=np.float32)

    return forward


def _torch_forward(artifact: Artifact, runtime: TorchRuntime, spec: dict[str, Any]) -> Callable[[Batch], Vectors]:
    import torch
    from transformers import AutoModel

    model = runtime.load(AutoModel, artifact.hf_dir)

    def pooled(input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        if spec["pooling"] == "cls":
            vectors = states[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(states.dtype)
            vectors = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(vectors.float(), p=2, dim=-1) if spec["normalize"] else vectors

    traced = runtime.traced(artifact.name, pooled, *trace_inputs(int(model.config.vocab_size)))

    def forward(batch: Batch) -> Vectors:
        with torch.inference_mode():
            return runtime.numpy(traced(runtime.tensor(batch.input_ids), runtime.tensor(batch.attention_mask)))

    return forward


TASK = Task(name=SENTENCE_EMBEDDING, loop="batch", create=Embedder)
