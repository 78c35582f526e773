"""`TorchRuntime.traced`: a forward as one TorchScript graph, or the forward itself when tracing fails or disagrees."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from app.runtimes.torch import TorchRuntime

RUNTIME = TorchRuntime("cpu", 1)
EXAMPLE, CHECK = [np.ones((2, 3), np.float32)], [-np.ones((4, 5), np.float32)]


def test_a_traceable_forward_becomes_a_graph_that_gives_the_same_results() -> None:
    weight = torch.randn(5, 2)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ weight[: x.shape[1]])

    traced = RUNTIME.traced("m", forward, EXAMPLE, CHECK)
    assert isinstance(traced, torch.jit.ScriptFunction)
    other = torch.randn(7, 4)
    assert torch.equal(traced(other), forward(other))


def test_a_branch_on_values_disagrees_on_the_check_and_runs_eagerly(caplog: pytest.LogCaptureFixture) -> None:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x * 2 if bool(x.sum() > 0) else x * 3  # the trace keeps the branch of its example only

    with caplog.at_level(logging.WARNING):
        assert RUNTIME.traced("m", forward, EXAMPLE, CHECK) is forward
    assert "m: runs eagerly, its traced graph disagrees" in caplog.text


def test_a_forward_that_cannot_be_traced_runs_eagerly(caplog: pytest.LogCaptureFixture) -> None:
    def forward(x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():  # type: ignore[attr-defined,no-untyped-call]
            raise RuntimeError("not traceable")
        return x

    with caplog.at_level(logging.WARNING):
        assert RUNTIME.traced("m", forward, EXAMPLE, CHECK) is forward
    assert "m: runs eagerly, tracing failed: not traceable" in caplog.text
