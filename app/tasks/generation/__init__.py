"""Text generation: a causal LM continues a prompt; generations are decoded together step by step (``stream``
loop). The runtime decides the decoding engine (ONNX Runtime's KV-cache decoder, or PyTorch: transformers' model,
or transformer/'s `TransformerLM` when the HF folder's config.json says ``"architecture": "transformer-lm"``)."""

from __future__ import annotations

import json

from app.runtimes import Runtime
from app.tasks.base import Task
from app.tasks.generation.generator import Generator
from contract import GENERATION, Artifact


def create(artifact: Artifact, runtime: Runtime) -> Generator:
    """The generator of ``artifact`` on ``runtime`` (the heavy runtime modules are imported only here)."""
    if runtime.name == "onnx":
        from app.runtimes.onnx import OnnxRuntime
        from app.tasks.generation.onnx import OnnxGenerator

        assert isinstance(runtime, OnnxRuntime)
        return OnnxGenerator(artifact, runtime)
    from app.runtimes.torch import TorchRuntime
    from app.tasks.generation.torch import TorchGenerator

    assert isinstance(runtime, TorchRuntime)
    if json.loads((artifact.hf_dir / "config.json").read_text()).get("architecture") == "transformer-lm":
        from app.tasks.generation.scratch import ScratchGenerator  # a model of transformer/, not an HF one

        return ScratchGenerator(artifact, runtime)
    return TorchGenerator(artifact, runtime)


TASK = Task(name=GENERATION, loop="stream", create=create)
