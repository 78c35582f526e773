"""Next-token choice, shared by every generation backend: repetition penalty, temperature, top-k, top-p."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    """0 = greedy (arg-max)."""
    top_k: int = 0
    """Keep the k most probable tokens (0 = all)."""
    top_p: float = 1.0
    """Keep the smallest set of tokens whose probability reaches top_p (1 = all)."""
    repetition_penalty: float = 1.0
    """CTRL-style: logits of tokens already present are divided (positive) or multiplied (negative) by it."""


def penalise(logits: npt.NDArray[np.float64], history: Sequence[int], penalty: float) -> None:
    """Apply the repetition penalty in place to every token id in ``history``."""
    if penalty == 1.0 or not history:
        return
    ids = np.unique(np.asarray(history, dtype=np.int64))
    ids = ids[ids < logits.shape[-1]]
    seen = logits[ids]
    logits[ids] = np.where(seen > 0, seen / penalty, seen * penalty)


def probabilities(logits: npt.NDArray[np.floating], params: SamplingParams,
                  history: Sequence[int] = ()) -> npt.NDArray[np.float64]:
    """The distribution the next token is drawn from (temperature > 0)."""
    scores = np.array(logits, dtype=np.float64)
    penalise(scores, history, params.repetition_penalty)
    scores /= params.temperature
    if 0 < params.top_k < scores.shape[-1]:
        kth = np.partition(scores, -params.top_k)[-params.top_k]
        scores[scores < kth] = -np.inf
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        before = np.cumsum(probs[order]) - probs[order]
        probs[order[before >= params.top_p]] = 0.0
        probs /= probs.sum()
    result: npt.NDArray[np.float64] = probs
    return result


def next_token(logits: npt.NDArray[np.floating], params: SamplingParams, history: Sequence[int],
               rng: np.random.Generator) -> int:
    """Greedy when temperature is 0, else one draw from `probabilities` with the request's own generator."""
    if params.temperature == 0:
        scores = np.array(logits, dtype=np.float64)
        penalise(scores, history, params.repetition_penalty)
        return int(scores.argmax())
    cumulative = np.cumsum(probabilities(logits, params, history))
    return int(min(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"), len(cumulative) - 1))


def choose(logits: npt.NDArray[np.floating], params: Sequence[SamplingParams], histories: Sequence[Sequence[int]],
           rngs: Sequence[np.random.Generator]) -> npt.NDArray[np.int64]:
    """`next_token` for every row of ``logits`` [rows, vocab], each with its own parameters, history and
    generator; the greedy rows without a repetition penalty in one arg-max."""
    picks: npt.NDArray[np.int64] = logits.argmax(axis=-1).astype(np.int64)
    for row, (row_params, history, rng) in enumerate(zip(params, histories, rngs, strict=True)):
        if row_params.temperature != 0 or row_params.repetition_penalty != 1.0:
            picks[row] = next_token(logits[row], row_params, history, rng)
    return picks
