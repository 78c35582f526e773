"""Models of the app made directly (no registry, no HTTP), as the registry makes them."""

from __future__ import annotations

from app.runtimes import create_runtime
from app.tasks import TASKS
from app.tasks.base import Model
from contract import Artifact


def make_model(artifact: Artifact, runtime: str = "onnx", threads: int = 1) -> Model:
    """The not yet loaded model of ``artifact``'s task on ``runtime`` (CPU)."""
    return TASKS[artifact.task].create(artifact, create_runtime(runtime, "cpu", threads))
