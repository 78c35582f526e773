"""What every loaded model holds, classifier or generator: its artifact and where and how it runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from app.artifacts import Artifact


class Engine(ABC):
    """A model from one artifact on one device; the task-specific contracts build on this."""

    kind: ClassVar[str]

    def __init__(self, artifact: Artifact, device: str, threads: int, dtype: str = "fp32") -> None:
        self.artifact = artifact
        self.device = device
        self.threads = threads
        self.dtype = dtype

    @property
    def info(self) -> dict[str, Any]:
        return {"backend": self.kind, "device": self.device, "threads": self.threads, **self._runtime_info()}

    @abstractmethod
    def load(self) -> None:
        """Read the artifact's weights and tokenizer (start-up only)."""

    @abstractmethod
    def warmup(self) -> None:
        """Run the model once so that the first request pays no one-off costs."""

    @abstractmethod
    def _load_model(self) -> None: ...

    @abstractmethod
    def _runtime_info(self) -> dict[str, Any]: ...
