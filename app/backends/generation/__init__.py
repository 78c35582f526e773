"""Text-generation engines behind one interface (separate from the classifier `Backend`)."""

from __future__ import annotations

from app.backends.generation.base import Generator


def generator_class(kind: str) -> type[Generator]:
    if kind == "onnx":
        from app.backends.generation.onnx_gen import OnnxGenerator

        return OnnxGenerator
    if kind == "torch":
        from app.backends.generation.torch_gen import TorchGenerator

        return TorchGenerator
    raise ValueError(f"unknown backend {kind!r}")
