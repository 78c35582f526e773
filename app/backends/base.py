"""The small contract every backend fulfils: ``load()``, ``warmup()``, ``classify(texts)``, ``attend(text)``,
``info``."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.artifacts import Artifact
from app.backends.engine import Engine
from app.backends.text import Prediction, TextEncoder, to_predictions

WARMUP_TEXTS = ["warm-up", "a second and somewhat longer text, so that padding is exercised too"]


class DeviceError(RuntimeError):
    """The requested device or dtype cannot be honoured: the service must not start."""


class TokenLimitError(ValueError):
    """The text is longer than the attention token cap (attention is never computed on a truncated text)."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class AttentionUnavailable(RuntimeError):
    """This model cannot compute attention maps on this engine (e.g. an ONNX generator without an attention
    graph)."""


@dataclass(frozen=True)
class NextToken:
    """One candidate for the token after a text."""

    id: int
    token: str
    """As the vocabulary spells it (e.g. ``Ġsea`` for a byte-level BPE)."""
    text: str
    """The token decoded on its own (e.g. `` sea``)."""
    probability: float


@dataclass(frozen=True)
class TopKPrediction:
    """A generator's prediction: the most probable next tokens, most probable first."""

    top_k: list[NextToken]


@dataclass(frozen=True)
class AttentionResult:
    """What the model sees and attends to for one text.

    ``prediction`` is the model's output for the text: a `Prediction` from classifiers, a `TopKPrediction`
    from generators (the API tags the two by ``type``).
    """

    tokens: list[str]
    attentions: npt.NDArray[np.float32]
    prediction: Prediction | TopKPrediction


class Backend(Engine):
    """A loaded sentiment model; HTTP never reaches below this interface."""

    def __init__(self, artifact: Artifact, device: str, threads: int, dtype: str = "fp32") -> None:
        super().__init__(artifact, device, threads, dtype)
        self._encoder: TextEncoder | None = None

    @classmethod
    @abstractmethod
    def cuda_available(cls) -> bool:
        """Whether this engine can run on a CUDA device here."""

    @classmethod
    def resolve_device(cls, requested: str, dtype: str) -> str:
        """``auto`` -> cuda when available; an explicit but unavailable cuda (or dtype) is a `DeviceError`."""
        cuda = cls.cuda_available()
        if requested == "cuda" and not cuda:
            raise DeviceError(f"device 'cuda' requested but the {cls.kind} backend has no CUDA device here")
        device = "cuda" if requested == "cuda" or (requested == "auto" and cuda) else "cpu"
        if dtype != "fp32" and not (cls.kind == "torch" and device == "cuda"):
            raise DeviceError(f"dtype {dtype!r} needs the torch backend on cuda (got {cls.kind} on {device})")
        return device

    def load(self) -> None:
        self._encoder = TextEncoder(self.artifact.hf_dir, self.artifact.max_length)
        self._load_model()

    def warmup(self) -> None:
        self.classify(WARMUP_TEXTS)

    def variants(self) -> list[str]:
        """Names of the artifact's other graphs this engine can serve (ONNX variants such as int8)."""
        return []

    def with_variant(self, variant: str) -> Backend:
        """This model on its ``variant`` graph, sharing what it can with this engine."""
        raise ValueError(f"the {self.kind} backend serves no {variant!r} variant")

    def classify(self, texts: Sequence[str]) -> list[Prediction]:
        if self._encoder is None:
            raise RuntimeError(f"{self.artifact.name}: classify() before load()")
        batch = self._encoder.encode(texts)
        logits = self._logits(batch.input_ids, batch.attention_mask)
        return to_predictions(logits, self.artifact.labels, batch.truncated)

    def attend(self, text: str, max_tokens: int) -> AttentionResult:
        """Tokens (special ones included), attentions ``[layers, heads, seq, seq]`` and the prediction of one
        text; a text over ``max_tokens`` tokens (or over the model's max_length) raises `TokenLimitError`."""
        if self._encoder is None:
            raise RuntimeError(f"{self.artifact.name}: attend() before load()")
        batch = self._encoder.encode([text])
        limit = min(max_tokens, self.artifact.max_length)
        count = int(batch.attention_mask.sum())
        if batch.truncated[0] or count > limit:
            size = f"more than {count}" if batch.truncated[0] else str(count)
            raise TokenLimitError(f"text is {size} tokens; attention is limited to {limit} tokens", limit)
        logits, attentions = self._attentions(batch.input_ids, batch.attention_mask)
        if attentions.ndim != 5 or attentions.shape[1] != 1 or attentions.shape[3:] != (count, count):
            raise ValueError(f"{self.artifact.name}: attentions of shape {attentions.shape} for {count} tokens")
        prediction = to_predictions(logits, self.artifact.labels, batch.truncated)[0]
        return AttentionResult(tokens=self._encoder.tokens(batch.input_ids[0]),
                               attentions=np.ascontiguousarray(attentions[:, 0], dtype=np.float32),
                               prediction=prediction)

    @abstractmethod
    def _logits(self, input_ids: npt.NDArray[np.int64],
                attention_mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]: ...

    @abstractmethod
    def _attentions(self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
                    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Logits ``[batch, labels]`` and attentions ``[layers, batch, heads, seq, seq]``."""
