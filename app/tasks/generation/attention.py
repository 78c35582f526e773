"""Attention maps of generators: ``attend(text, max_tokens)`` -> tokens, causal attentions, next-token top-k.

The runtime-specific forward (an eager view of the torch model, or a session on ``model.attn.onnx``) is built
on the first attention request, once, under a lock: a server that never serves attention never pays its
memory (for SmolLM2-135M under ONNX Runtime the attention graph is another ~540 MB).
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from typing import ClassVar, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from app.tasks.attention import AttentionResult, NextToken, TokenLimitError, TopKPrediction
from app.tasks.generation.generator import Generator
from app.tasks.text import softmax

TOP_K = 5


class AttentionOutputs(NamedTuple):
    logits: npt.NDArray[np.float32]
    """Next-token logits ``[vocab]``."""
    attentions: npt.NDArray[np.float32]
    """``[layers, heads, seq, seq]``."""
    experts: npt.NDArray[np.int64] | None = None
    """Mixture-of-Experts models: ``[layers, seq, top_k]``, the experts each token was routed to."""


class AttentionForward(Protocol):
    def __call__(self, input_ids: npt.NDArray[np.int64]) -> AttentionOutputs:
        """``input_ids [1, seq]`` -> the `AttentionOutputs` of the text."""


class AttendingGenerator(Generator):
    """A generator that also serves attention maps; subclasses say how to build their attention forward."""

    capabilities = ("attention",)

    _attention_lock: ClassVar[threading.RLock] = threading.RLock()
    """Reentrant: a variant builds its forward by asking its source model for that model's (the same lock)."""
    _attention: AttentionForward | None = None

    def attend(self, text: str, max_tokens: int) -> AttentionResult:
        """The text's tokens (as `encode` gives them to generation), attentions ``[layers, heads, seq, seq]``
        (rows sum to 1, zero above the diagonal), the ``TOP_K`` most probable next tokens and, for a Mixture of
        Experts, the experts each token was routed to; a text over
        ``max_tokens`` tokens (or over the context window) raises `TokenLimitError`."""
        ids = self.encode(text)
        limit = min(max_tokens, self.context_length)
        if len(ids) > limit:
            raise TokenLimitError(f"text is {len(ids)} tokens; attention is limited to {limit} tokens", limit)
        logits, attentions, experts = self._attention_forward()(np.array([ids], dtype=np.int64))
        if attentions.ndim != 4 or attentions.shape[2:] != (len(ids), len(ids)):
            raise ValueError(f"{self.artifact.name}: attentions of shape {attentions.shape} for {len(ids)} tokens")
        return AttentionResult(tokens=[self.tokenizer.id_to_token(i) or "<unk>" for i in ids],
                               attentions=np.ascontiguousarray(attentions, dtype=np.float32),
                               prediction=self._top_k(logits), experts=experts)

    def _top_k(self, logits: npt.NDArray[np.float32]) -> TopKPrediction:
        """The model's own next-token distribution (softmax of the logits, no sampling settings)."""
        probs = softmax(logits)
        best = np.argsort(-probs, kind="stable")[:TOP_K]
        return TopKPrediction([NextToken(id=int(i), token=self.tokenizer.id_to_token(int(i)) or "<unk>",
                                         text=self.tokenizer.decode([int(i)], skip_special_tokens=False),
                                         probability=float(probs[i])) for i in best])

    def _attention_forward(self) -> AttentionForward:
        if self._attention is None:
            with self._attention_lock:
                if self._attention is None:
                    self._attention = self._build_attention()
        return self._attention

    @abstractmethod
    def _build_attention(self) -> AttentionForward:
        """The engine's attention forward; called once, on the first attention request. Raises
        `AttentionUnavailable` when this artifact cannot serve attention on this engine."""
