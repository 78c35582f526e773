"""`BatchModel.measure_call_overhead`: a call's fixed cost in units of a row's length, from timed calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from app.tasks.base import BatchModel


class Timed(BatchModel):
    """A model whose calls cost ``fixed`` seconds plus ``per_unit`` per unit of row length, on a fake clock;
    ``slow_first`` adds that much to its first call only (a cold cache, another process taking the core)."""

    def __init__(self, fixed: float, per_unit: float, slow_first: float = 0.0) -> None:
        self.fixed, self.per_unit, self.slow_first = fixed, per_unit, slow_first
        self.now = 0.0
        self.calls: list[int] = []

    def load(self) -> None: ...

    def warmup(self) -> None: ...

    def clock(self) -> float:
        return self.now

    def predict(self, rows: Sequence[Any]) -> list[Any]:
        self.now += self.fixed + self.per_unit * sum(len(row) for row in rows)
        if not self.calls:
            self.now += self.slow_first
        self.calls.append(len(rows))
        return list(rows)


def test_the_fixed_cost_is_counted_in_units_of_row_length() -> None:
    model = Timed(fixed=0.010, per_unit=0.0001)  # 10 ms a call, 0.1 ms a token: a call costs what 100 tokens do
    assert model.measure_call_overhead([7] * 30, size=16, clock=model.clock) == 100
    assert model.call_overhead == 100
    assert model.calls == [1, 1, 1, 16, 16, 16]


def test_a_cheaper_call_gives_a_smaller_overhead() -> None:
    onnx_like, torch_like = Timed(fixed=0.002, per_unit=0.0001), Timed(fixed=0.012, per_unit=0.0001)
    assert onnx_like.measure_call_overhead("x" * 30, clock=onnx_like.clock) == 20
    assert torch_like.measure_call_overhead("x" * 30, clock=torch_like.clock) == 120


def test_the_fastest_of_the_repeats_counts() -> None:
    model = Timed(fixed=0.010, per_unit=0.0001, slow_first=1.0)
    assert model.measure_call_overhead([7] * 30, clock=model.clock) == 100


@pytest.mark.parametrize(("fixed", "per_unit", "expected"), [(0.0, 0.001, 1), (0.5, 0.0, 4096)])
def test_the_overhead_stays_within_bounds(fixed: float, per_unit: float, expected: int) -> None:
    model = Timed(fixed=fixed, per_unit=per_unit)
    assert model.measure_call_overhead([7] * 30, clock=model.clock) == expected
