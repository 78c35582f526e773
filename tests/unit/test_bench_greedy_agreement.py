"""benchmarks/report.py: agreement of two sets of greedy continuations of the same prompts."""

from __future__ import annotations

import pytest

from benchmarks.report import common_prefix, greedy_agreement


def test_common_prefix_stops_at_the_first_difference_or_the_shorter_end() -> None:
    assert common_prefix([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([5], [6]) == 0
    assert common_prefix([], [1]) == 0


def test_agreement_counts_tokens_before_the_first_difference_over_the_longer_continuation() -> None:
    reference = [[1, 2, 3, 4], [7, 8, 9, 10], [4, 4]]
    other = [[1, 2, 3, 4], [7, 8, 0, 10], [4, 4, 4, 4]]  # identical; differs at 2; longer (eos missed)
    agreement = greedy_agreement(reference, other)
    assert agreement["tokens_identical"] == pytest.approx((4 + 2 + 2) / (4 + 4 + 4))
    assert agreement["continuations_identical"] == 1
    assert agreement["continuations"] == 3
    assert agreement["first_difference_median"] == 2


def test_identical_continuations_agree_fully_and_mismatched_counts_are_an_error() -> None:
    same = greedy_agreement([[1, 2], [3]], [[1, 2], [3]])
    assert same == {"tokens_identical": 1.0, "continuations_identical": 2, "continuations": 2,
                    "first_difference_median": None}
    with pytest.raises(ValueError, match="2 reference continuations, 1 others"):
        greedy_agreement([[1], [2]], [[1]])
