"""The one admission interface: how work reaches a model.

Three loops stand behind it, one per kind of work, and a task names the one that serves it (`Task.loop`):
`Batcher` (texts of concurrent requests share model calls), `Schedulers` (generations decoded together step by
step) and `Runner` (one call at a time, e.g. attention maps). Each takes work with ``submit(name, model, work)``,
bounds its queue (`overloaded` -> 429 with Retry-After), ends work at the request deadline (504) and, on
``close``, refuses new work and ends what waits (503).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from app.errors import Overloaded
from app.tasks.base import Model


def overloaded(waiting: int, what: str, purpose: str) -> Overloaded:
    """The refusal of a full queue: ``waiting`` ``what`` (requests, generations) already wait ``purpose``."""
    return Overloaded(f"{waiting} {what} already wait {purpose}; retry later", retry_after_s=1)


class Admission(ABC):
    """A loop that admits work for models, within a bounded queue."""

    @abstractmethod
    def submit(self, name: str, model: Model, work: Any) -> Any:
        """Queue ``work`` for model ``name``; `Overloaded` at once when the queue is full. What comes back
        depends on the loop: an awaitable result, or an async iterator of chunks."""

    @property
    @abstractmethod
    def waiting(self) -> int:
        """Work items queued and not yet handed to a model call."""

    @abstractmethod
    async def close(self, timeout_s: float) -> None:
        """Refuse new work; finish or fail (503) what was accepted within ``timeout_s``."""
