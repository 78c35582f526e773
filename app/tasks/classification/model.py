"""Text classification: labels with probabilities for each text, and the attention maps of one text.

The model reads windows of at most ``max_length`` tokens: a text is cut into windows as a long-text strategy says
(`app.tasks.classification.long_text`), the windows are the rows of batched calls (`predict`) and each text's
prediction joins its windows' logits (`join`). The runtime-specific forward (`app.tasks.classification.forward`)
computes logits and, for attention maps, logits with every layer's attention weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from app.runtimes import Runtime
from app.settings import LongTextStrategy
from app.tasks.attention import AttentionResult, TokenLimitError
from app.tasks.base import BatchModel
from app.tasks.classification.forward import Floats, Forward, make_forward
from app.tasks.classification.long_text import Split, Splitter, average, pad
from app.tasks.text import WARMUP_SENTENCE, WARMUP_TEXTS, TextEncoder, softmax
from contract import Artifact


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    scores: dict[str, float]
    truncated: bool
    strategy: LongTextStrategy = "truncate"
    """How the text was read; by default one window from its start, as `Classifier.attend` reads it."""
    chunks: int = 1
    """Windows the model read (more than one only with the ``chunks`` strategy)."""


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
    """Rows of its batched calls are windows: token ids, special tokens included (`split` makes them)."""

    capabilities = ("attention",)
    call_overhead = 16  # tokens; measured at warm-up

    def __init__(self, artifact: Artifact, runtime: Runtime) -> None:
        super().__init__(artifact, runtime)
        self._encoder: TextEncoder | None = None
        self._splitter: Splitter | None = None
        self._forward: Forward | None = None

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            raise RuntimeError(f"{self.artifact.name}: used before load()")
        return self._encoder

    @property
    def splitter(self) -> Splitter:
        if self._splitter is None:
            raise RuntimeError(f"{self.artifact.name}: used before load()")
        return self._splitter

    @property
    def forward(self) -> Forward:
        if self._forward is None:
            raise RuntimeError(f"{self.artifact.name}: used before load()")
        return self._forward

    def load(self) -> None:
        self.artifact.require(str(self.artifact.manifest["onnx"]["model"]))
        self._encoder = TextEncoder(self.artifact.hf_dir, self.artifact.max_length)
        self._splitter = Splitter(self.artifact.hf_dir, self.artifact.max_length)
        self._forward = make_forward(self.artifact, self.runtime)

    def warmup(self) -> None:
        self.classify(WARMUP_TEXTS, "chunks")
        self.measure_call_overhead(self.split([WARMUP_SENTENCE], "truncate")[0].windows[0])

    def split(self, texts: Sequence[str], strategy: LongTextStrategy) -> list[Split]:
        """Each text cut into windows as ``strategy`` says (tokenisation only, no model call)."""
        return self.splitter.split(texts, strategy)

    def predict(self, windows: Sequence[Sequence[int]]) -> list[Floats]:
        """The logits of each window (one model call, the windows padded to the longest)."""
        input_ids, attention_mask = pad(windows, self.encoder.pad_id)
        return list(self.forward.logits(input_ids, attention_mask))

    def join(self, splits: Sequence[Split], rows: Sequence[Floats]) -> list[Prediction]:
        """One prediction per text from ``rows``, the logits of every split's windows in order."""
        logits, start = [], 0
        for split in splits:
            end = start + len(split.windows)
            logits.append(average(rows[start:end], split.windows))
            start = end
        if start != len(rows):
            raise ValueError(f"{len(rows)} rows of logits for {start} windows")
        predictions = to_predictions(np.stack(logits), self.artifact.labels, [s.truncated for s in splits])
        return [replace(p, strategy=s.strategy, chunks=len(s.windows))
                for p, s in zip(predictions, splits, strict=True)]

    def classify(self, texts: Sequence[str], strategy: LongTextStrategy) -> list[Prediction]:
        """`split`, `predict` and `join` in one go, without the batcher (warm-up, benchmarks, tests)."""
        splits = self.split(texts, strategy)
        return self.join(splits, self.predict([w for s in splits for w in s.windows]))

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
        twin.artifact = self.artifact.variant(variant)
        twin._forward = self.forward.on_variant(twin.artifact)
        return twin

    def _info(self) -> dict[str, Any]:
        return {**self.forward.info(), "call_overhead": self.call_overhead}
