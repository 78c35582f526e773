"""Text classification: labels with probabilities for each text, and the attention maps of one text.

The model reads at most ``max_length`` tokens of a text (the rest is cut and the prediction flagged
``truncated``); the runtime-specific forward (`app.tasks.classification.forward`) computes logits and, for
attention maps, logits with every layer's attention weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.runtimes import Runtime
from app.tasks.attention import AttentionResult, TokenLimitError
from app.tasks.base import BatchModel
from app.tasks.classification.forward import Forward, make_forward, variant_artifact
from app.tasks.text import TextEncoder, softmax
from contract import Artifact

WARMUP_TEXTS = ["warm-up", "a second and somewhat longer text, so that padding is exercised too"]


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    scores: dict[str, float]
    truncated: bool


def to_predictions(logits: npt.NDArray[np.floating], labels: Sequence[str],
                   truncated: Sequence[bool]) -> list[Prediction]:
    """One prediction per row: arg-max label, its probability, all probabilities by label."""
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise ValueError(f"logits of shape {logits.shape} do not match {len(labels)} labels")
    probs = softmax(logits)
    return [
        Prediction(label=labels[int(row.argmax())], score=float(row.max()),
                   scores={label: float(p) for label, p in zip(labels, row, strict=True)}, truncated=cut)
        for row, cut in zip(probs, truncated, strict=True)
    ]


class Classifier(BatchModel):
    capabilities = ("attention",)

    def __init__(self, artifact: Artifact, runtime: Runtime) -> None:
        super().__init__(artifact, runtime)
        self._encoder: TextEncoder | None = None
        self._forward: Forward | None = None

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            raise RuntimeError(f"{self.artifact.name}: used before load()")
        return self._encoder

    @property
    def forward(self) -> Forward:
        if self._forward is None:
            raise RuntimeError(f"{self.artifact.name}: used before load()")
        return self._forward

    def load(self) -> None:
        self.artifact.require(str(self.artifact.manifest["onnx"]["model"]))
        self._encoder = TextEncoder(self.artifact.hf_dir, self.artifact.max_length)
        self._forward = make_forward(self.artifact, self.runtime)

    def warmup(self) -> None:
        self.predict(WARMUP_TEXTS)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        batch = self.encoder.encode(texts)
        logits = self.forward.logits(batch.input_ids, batch.attention_mask)
        return to_predictions(logits, self.artifact.labels, batch.truncated)

    def attend(self, text: str, max_tokens: int) -> AttentionResult:
        """Tokens (special tokens included), attentions ``[layers, heads, seq, seq]`` and the prediction of one
        text; a text over ``max_tokens`` tokens (or over the model's max_length) raises `TokenLimitError`."""
        batch = self.encoder.encode([text])
        limit = min(max_tokens, self.artifact.max_length)
        count = int(batch.attention_mask.sum())
        if batch.truncated[0] or count > limit:
            size = f"more than {count}" if batch.truncated[0] else str(count)
            raise TokenLimitError(f"text is {size} tokens; attention is limited to {limit} tokens", limit)
        logits, attentions = self.forward.attentions(batch.input_ids, batch.attention_mask)
        if attentions.ndim != 5 or attentions.shape[1] != 1 or attentions.shape[3:] != (count, count):
            raise ValueError(f"{self.artifact.name}: attentions of shape {attentions.shape} for {count} tokens")
        prediction = to_predictions(logits, self.artifact.labels, batch.truncated)[0]
        return AttentionResult(tokens=self.encoder.tokens(batch.input_ids[0]),
                               attentions=np.ascontiguousarray(attentions[:, 0], dtype=np.float32),
                               prediction=prediction)

    def variants(self) -> list[str]:
        return self.forward.variants()

    def with_variant(self, variant: str) -> Classifier:
        """This model on another of its graphs; the tokenizer and the attention forward are shared."""
        if variant == self.forward.variant:
            return self
        twin = copy.copy(self)
        twin.artifact = variant_artifact(self.artifact, variant)
        twin._forward = self.forward.on_variant(twin.artifact)
        return twin

    def _info(self) -> dict[str, Any]:
        return self.forward.info()
