"""Op counting for ONNX graphs and ONNX Runtime profiles (pure helpers of benchmarks/onnx_fusion.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import onnx

CONTRIB_DOMAIN = "com.microsoft"


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Nodes of the main graph by op type, most frequent first (ties by name)."""
    counts = Counter(node.op_type for node in model.graph.node)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def fused_op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Nodes of ONNX Runtime's contrib domain (``com.microsoft``: the fused kernels) by op type."""
    counts = Counter(node.op_type for node in model.graph.node if node.domain == CONTRIB_DOMAIN)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def kernel_time_shares(events: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Share of kernel time per op type in an ONNX Runtime profile (its JSON list of events), largest first."""
    times: Counter[str] = Counter()
    for event in events:
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            times[event["args"]["op_name"]] += int(event["dur"])
    total = sum(times.values()) or 1
    return {op: value / total for op, value in times.most_common()}
