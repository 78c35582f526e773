"""app.attention: layer/head selection, head mean, attention rollout, row normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from app.api.routes.attention import indices
from app.tasks.attention import SelectionError, mean_heads, reduce, rollout, select


def random_attentions(layers: int = 3, heads: int = 4, seq: int = 5, seed: int = 0) -> np.ndarray:
    """Row-stochastic ``[layers, heads, seq, seq]`` like a softmax output."""
    logits = np.random.default_rng(seed).normal(size=(layers, heads, seq, seq))
    weights = np.exp(logits)
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


def test_select_picks_sorted_unique_layers_and_heads() -> None:
    attentions = random_attentions()
    picked = select(attentions, layers=[2, 0, 2], heads=[3, 1])
    assert (picked.layers, picked.heads) == ([0, 2], [1, 3])
    assert picked.attentions.shape == (2, 2, 5, 5)
    assert np.array_equal(picked.attentions[1, 0], attentions[2, 1])
    assert np.array_equal(picked.attentions[0, 1], attentions[0, 3])
    everything = select(attentions)
    assert (everything.layers, everything.heads) == ([0, 1, 2], [0, 1, 2, 3])
    assert np.array_equal(everything.attentions, attentions)


@pytest.mark.parametrize(("layers", "heads", "field", "message"), [
    ([3], None, "layers", r"layers \[3\] out of range: the model has 3 layers"),
    ([0, -1], None, "layers", r"layers \[-1\] out of range"),
    (None, [4, 9], "heads", r"heads \[4, 9\] out of range: the model has 4 heads"),
    ([], None, "layers", "no layers selected"),
])
def test_select_rejects_bad_indices(layers: list[int] | None, heads: list[int] | None, field: str,
                                    message: str) -> None:
    with pytest.raises(SelectionError, match=message) as caught:
        select(random_attentions(), layers, heads)
    assert caught.value.field == field


def test_select_rejects_a_non_square_array() -> None:
    with pytest.raises(ValueError, match="expected"):
        select(np.zeros((2, 2, 3, 4), dtype=np.float32))


def test_mean_heads_by_hand() -> None:
    attentions = np.array([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.5, 0.5]]]], dtype=np.float32)
    mean = mean_heads(attentions)
    assert mean.shape == (1, 1, 2, 2)
    assert np.allclose(mean[0, 0], [[0.5, 0.5], [0.25, 0.75]])


def test_rollout_on_a_hand_made_two_layer_example() -> None:
    # layer 0: heads average to [[1, 0], [.5, .5]]; + I -> [[2, 0], [.5, 1.5]] -> rows [[1, 0], [.25, .75]]
    # layer 1: [[0, 1], [1, 0]]; + I -> all ones -> rows [[.5, .5], [.5, .5]]
    # rollout = A1 @ A0 = [[.625, .375], [.625, .375]]  (A0 @ A1 would be all .5: the order matters)
    layer0 = [[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]]
    layer1 = [[[0.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]]
    rolled = rollout(np.array([layer0, layer1], dtype=np.float32))
    assert rolled.shape == (1, 1, 2, 2)
    assert np.allclose(rolled[0, 0], [[0.625, 0.375], [0.625, 0.375]])


def test_rollout_of_one_layer_is_half_attention_half_identity() -> None:
    attentions = random_attentions(layers=1, heads=1)
    assert np.allclose(rollout(attentions)[0, 0], 0.5 * attentions[0, 0] + 0.5 * np.eye(5), atol=1e-6)


def test_every_aggregate_keeps_rows_normalised() -> None:
    attentions = random_attentions(layers=4, heads=3, seq=7, seed=1)
    shapes = {"none": (2, 3, 7, 7), "mean": (2, 1, 7, 7), "rollout": (1, 1, 7, 7)}
    for aggregate, shape in shapes.items():
        reduced = reduce(attentions, [1, 3], None, aggregate)  # type: ignore[arg-type]
        assert reduced.attentions.shape == shape
        assert reduced.attentions.dtype == np.float32
        assert np.allclose(reduced.attentions.sum(axis=-1), 1.0, atol=1e-5)
        assert (reduced.layers, reduced.heads) == ([1, 3], [0, 1, 2])


def test_reduce_aggregates_only_the_selection() -> None:
    attentions = random_attentions(layers=4, heads=3, seq=6, seed=2)
    mean = reduce(attentions, [2], [0, 2], "mean").attentions
    assert np.allclose(mean[0, 0], (attentions[2, 0] + attentions[2, 2]) / 2, atol=1e-6)
    rolled = reduce(attentions, [0, 3], [1], "rollout").attentions
    assert np.allclose(rolled, rollout(attentions[[0, 3]][:, [1]]), atol=1e-6)
    assert not np.allclose(rolled, rollout(attentions), atol=1e-3)


def test_png_titles_shorten_runs_of_indices() -> None:
    assert indices(list(range(30))) == "0-29"
    assert indices([3, 4, 5]) == "3-5"
    assert indices([0, 1]) == "0, 1"
    assert indices([0, 2, 3, 4]) == "0, 2, 3, 4"
