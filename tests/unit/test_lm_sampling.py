"""Sampling (temperature, top-k, top-p, repetition penalty, seeds) and the decoding loop's stops and limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from app.tasks.generation.generator import Generator
from app.tasks.generation.sampling import SamplingParams, next_token, probabilities
from app.tasks.generation.sequence import GenerationParams
from tests.scripted import Scripted

LOGITS = np.log(np.array([0.5, 0.25, 0.15, 0.1]))


def draws(params: SamplingParams, seed: int, n: int = 400, history: tuple[int, ...] = ()) -> list[int]:
    rng = np.random.default_rng(seed)
    return [next_token(LOGITS, params, history, rng) for _ in range(n)]


def test_greedy_and_top_k_1_pick_the_arg_max() -> None:
    assert set(draws(SamplingParams(temperature=0), 0, 20)) == {0}
    assert set(draws(SamplingParams(top_k=1), 0, 50)) == {0}


def test_top_k_and_top_p_restrict_the_support() -> None:
    assert set(draws(SamplingParams(top_k=2), 0)) == {0, 1}
    np.testing.assert_allclose(probabilities(LOGITS, SamplingParams(top_k=2)), [2 / 3, 1 / 3, 0, 0])
    np.testing.assert_allclose(probabilities(LOGITS, SamplingParams(top_p=0.7)), [2 / 3, 1 / 3, 0, 0])
    np.testing.assert_allclose(probabilities(LOGITS, SamplingParams(top_p=0.5)), [1, 0, 0, 0])
    assert set(draws(SamplingParams(), 0)) == {0, 1, 2, 3}


def test_temperature_sharpens_and_flattens() -> None:
    cold, hot = probabilities(LOGITS, SamplingParams(temperature=0.2)), probabilities(LOGITS, SamplingParams(2.0))
    np.testing.assert_allclose(probabilities(LOGITS, SamplingParams()), [0.5, 0.25, 0.15, 0.1])
    assert cold[0] > 0.95 and hot[0] < 0.5 and hot[3] > 0.1


def test_repetition_penalty_discourages_seen_tokens() -> None:
    logits = np.array([2.0, 1.9, -1.0])
    assert next_token(logits, SamplingParams(temperature=0), [], np.random.default_rng(0)) == 0
    assert next_token(logits, SamplingParams(temperature=0, repetition_penalty=1.5), [0],
                      np.random.default_rng(0)) == 1
    probs = probabilities(logits, SamplingParams(repetition_penalty=2.0), [2])
    np.testing.assert_allclose(probs, np.exp([2.0, 1.9, -2.0]) / np.exp([2.0, 1.9, -2.0]).sum())


def test_same_seed_same_draws() -> None:
    assert draws(SamplingParams(), 7) == draws(SamplingParams(), 7)
    assert draws(SamplingParams(), 7) != draws(SamplingParams(), 8)


def run(gen: Generator, **params: Any) -> tuple[str, Any]:
    chunks = list(gen.stream([1], GenerationParams(sampling=SamplingParams(temperature=0), **params)))
    assert all(c.finish_reason is None for c in chunks[:-1])
    return "".join(c.text for c in chunks), chunks[-1]


def test_length_eos_and_context_limits() -> None:
    text, last = run(Scripted([1, 2, 4, 1]), max_new_tokens=3)
    assert (text, last.finish_reason, last.completion_tokens, last.prompt_tokens) == ("a b c", "length", 3, 1)
    text, last = run(Scripted([1, 2, 0, 4]), max_new_tokens=10)
    assert (text, last.finish_reason, last.completion_tokens) == ("a b", "stop", 3)
    text, last = run(Scripted([1] * 10, context=5), max_new_tokens=10)
    assert (text, last.finish_reason) == ("a a a a", "length")


def test_stop_strings_end_the_text_and_are_never_streamed() -> None:
    gen = Scripted([1, 2, 3, 4])
    pieces: Iterator[Any] = gen.stream([1], GenerationParams(max_new_tokens=10, stop=("b s",),
                                                             sampling=SamplingParams(temperature=0)))
    chunks = list(pieces)
    assert "".join(c.text for c in chunks) == "a "
    assert chunks[-1].finish_reason == "stop"
    assert not any("b" in c.text for c in chunks)
    assert run(Scripted([1, 2, 3, 4]), max_new_tokens=10, stop=("zz",))[0] == "a b stop" + " c" * 7


@pytest.mark.parametrize("seed", [3, 11])
def test_stream_is_reproducible_with_a_seed(seed: int) -> None:
    gen = Scripted([1, 2, 4])
    params = GenerationParams(max_new_tokens=8, seed=seed)
    assert list(gen.tokens([1], params)) == list(gen.tokens([1], params))
