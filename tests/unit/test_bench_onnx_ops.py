"""benchmarks/onnx_ops.py: op counts of a graph, its fused (com.microsoft) ops, kernel time shares of a profile."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from benchmarks.onnx_ops import fused_op_counts, kernel_time_shares, op_counts


def graph_with_fused_ops() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]),
             helper.make_node("BiasGelu", ["a", "b"], ["g"], domain="com.microsoft"),
             helper.make_node("MatMul", ["g", "w"], ["c"]),
             helper.make_node("SkipLayerNormalization", ["c", "x", "s", "t"], ["d"], domain="com.microsoft"),
             helper.make_node("SkipLayerNormalization", ["d", "x", "s", "t"], ["e"], domain="com.microsoft"),
             helper.make_node("Gelu", ["e"], ["y"])]  # the standard opset's Gelu: not a fused kernel
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]))


def test_op_counts_by_type_most_frequent_first() -> None:
    counts = op_counts(graph_with_fused_ops())
    assert counts == {"MatMul": 2, "SkipLayerNormalization": 2, "BiasGelu": 1, "Gelu": 1}
    assert list(counts) == ["MatMul", "SkipLayerNormalization", "BiasGelu", "Gelu"]


def test_fused_ops_are_the_contrib_domain_nodes() -> None:
    assert fused_op_counts(graph_with_fused_ops()) == {"SkipLayerNormalization": 2, "BiasGelu": 1}


def test_kernel_time_shares_sum_kernel_events_per_op() -> None:
    events = [{"cat": "Session", "name": "model_run", "dur": 1000},
              {"cat": "Node", "name": "mm1_kernel_time", "dur": 60, "args": {"op_name": "MatMul"}},
              {"cat": "Node", "name": "mm1_fence_before", "dur": 500, "args": {"op_name": "MatMul"}},
              {"cat": "Node", "name": "mm2_kernel_time", "dur": 15, "args": {"op_name": "MatMul"}},
              {"cat": "Node", "name": "attn_kernel_time", "dur": 25, "args": {"op_name": "Attention"}}]
    shares = kernel_time_shares(events)
    assert list(shares) == ["MatMul", "Attention"]
    assert shares["MatMul"] == pytest.approx(0.75)
    assert shares["Attention"] == pytest.approx(0.25)
    assert kernel_time_shares([]) == {}
