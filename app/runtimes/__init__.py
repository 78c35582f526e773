"""Runtimes: how a model runs. One module per runtime owns model/session creation, execution providers and
their verification, threads, device and dtype; tasks (`app.tasks`) say what is computed on them.

A runtime object is made once per process from the settings (`create_runtime`); every model shares it.
Heavy imports (onnxruntime, torch) happen only for the runtime chosen.
"""

from __future__ import annotations

from app.runtimes.base import DeviceError, Runtime

__all__ = ["DeviceError", "Runtime", "create_runtime", "runtime_class"]


def runtime_class(name: str) -> type[Runtime]:
    if name == "onnx":
        from app.runtimes.onnx import OnnxRuntime

        return OnnxRuntime
    if name == "torch":
        from app.runtimes.torch import TorchRuntime

        return TorchRuntime
    raise ValueError(f"unknown runtime {name!r}")


def create_runtime(name: str, device: str, threads: int, dtype: str = "fp32") -> Runtime:
    """The runtime ``name`` on ``device`` (``auto``, ``cpu``, ``cuda``); `DeviceError` when it cannot be had."""
    kind = runtime_class(name)
    return kind(kind.resolve_device(device, dtype), threads, dtype)
