"""Inference engines behind one interface; heavy imports happen only for the engine chosen."""

from __future__ import annotations

from app.backends.base import Backend


def backend_class(kind: str) -> type[Backend]:
    if kind == "onnx":
        from app.backends.onnx_backend import OnnxBackend

        return OnnxBackend
    if kind == "torch":
        from app.backends.torch_backend import TorchBackend

        return TorchBackend
    raise ValueError(f"unknown backend {kind!r}")
