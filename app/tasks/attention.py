"""Attention as a capability shared by tasks: the result types, and the maths without I/O (layer/head selection,
head mean, attention rollout).

Arrays are ``[layers, heads, query, key]`` with rows (the key axis) summing to 1. Every function returns
the same 4-D layout so that a response can always be read as ``attentions[layer][head][query][key]``:

- ``none``: the selected layers and heads, ``[len(layers), len(heads), seq, seq]``;
- ``mean``: per selected layer the mean over the selected heads, ``[len(layers), 1, seq, seq]``;
- ``rollout``: attention rollout (Abnar & Zuidema 2020) through the selected layers in ascending order,
  each layer the mean of the selected heads, ``[1, 1, seq, seq]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

Aggregate = Literal["none", "mean", "rollout"]
AGGREGATES: tuple[Aggregate, ...] = ("none", "mean", "rollout")
Array = npt.NDArray[np.float32]


class SelectionError(ValueError):
    """A layer or head index the model does not have; ``field`` is ``layers`` or ``heads``."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Selection:
    """What was computed: the (sorted, unique) layer and head indices it was computed from."""

    attentions: Array
    layers: list[int]
    heads: list[int]


def _indices(wanted: Sequence[int] | None, count: int, what: str) -> list[int]:
    if wanted is None:
        return list(range(count))
    chosen = sorted(set(wanted))
    if not chosen:
        raise SelectionError(f"no {what} selected", what)
    bad = [index for index in chosen if not 0 <= index < count]
    if bad:
        raise SelectionError(f"{what} {bad} out of range: the model has {count} {what} (indices 0..{count - 1})",
                             what)
    return chosen


def select(attentions: Array, layers: Sequence[int] | None = None, heads: Sequence[int] | None = None) -> Selection:
    """The given layers and heads (None = all), in ascending order; duplicates are dropped."""
    if attentions.ndim != 4 or attentions.shape[2] != attentions.shape[3]:
        raise ValueError(f"expected [layers, heads, seq, seq], got shape {attentions.shape}")
    chosen_layers = _indices(layers, attentions.shape[0], "layers")
    chosen_heads = _indices(heads, attentions.shape[1], "heads")
    picked = attentions[np.ix_(chosen_layers, chosen_heads)]
    return Selection(np.ascontiguousarray(picked, dtype=np.float32), chosen_layers, chosen_heads)


def mean_heads(attentions: Array) -> Array:
    """``[layers, heads, s, s]`` -> ``[layers, 1, s, s]``: the mean over heads (rows still sum to 1)."""
    result: Array = attentions.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    return result


def rollout(attentions: Array) -> Array:
    """Attention rollout: per layer average the heads, add the identity (the residual connection),
    renormalise the rows, then multiply through the layers in order (``R = A_L ... A_2 A_1``).

    ``[layers, heads, s, s]`` -> ``[1, 1, s, s]``; the result is row-stochastic.
    """
    per_layer = attentions.astype(np.float64).mean(axis=1)
    seq = per_layer.shape[-1]
    result = np.eye(seq)
    for layer in per_layer:
        with_residual = layer + np.eye(seq)
        with_residual /= with_residual.sum(axis=-1, keepdims=True)
        result = with_residual @ result
    rolled: Array = result[np.newaxis, np.newaxis].astype(np.float32)
    return rolled


def reduce(attentions: Array, layers: Sequence[int] | None, heads: Sequence[int] | None,
           aggregate: Aggregate) -> Selection:
    """Select, then aggregate as the module docstring describes."""
    selection = select(attentions, layers, heads)
    if aggregate == "none":
        return selection
    combine = mean_heads if aggregate == "mean" else rollout
    return Selection(combine(selection.attentions), selection.layers, selection.heads)


class TokenLimitError(ValueError):
    """The text is longer than the attention token cap (attention is never computed on a truncated text)."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class AttentionUnavailable(RuntimeError):
    """This model cannot compute attention maps on this runtime (e.g. an ONNX generator without an attention
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

    ``prediction`` is the model's output for the text: a label prediction from classifiers (any object with
    ``label``, ``score`` and ``scores``), a `TopKPrediction` from generators (the API tags the two by ``type``).
    """

    tokens: list[str]
    attentions: Array
    prediction: Any
    experts: npt.NDArray[np.int64] | None = None
    """Mixture-of-Experts models only: ``[layers, seq, top_k]``, the experts each token was routed to in each
    layer, best first (None for every other model)."""


class Attending(Protocol):
    """A model with the ``attention`` capability."""

    def attend(self, text: str, max_tokens: int) -> AttentionResult:
        """Tokens (special ones included), attentions ``[layers, heads, seq, seq]`` and the prediction of one
        text; a text over ``max_tokens`` tokens raises `TokenLimitError`."""
