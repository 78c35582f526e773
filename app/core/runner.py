"""The single-call loop: one model call per request in a worker thread, a bounded number at a time, with a
bounded queue. Its slots (``limiter``) are shared with the `Batcher`, so that classification rounds and single
calls together never run more than ``APP_MAX_CONCURRENCY`` inferences at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from app.core.admission import Admission, overloaded
from app.metrics import QUEUE_DEPTH, QUEUE_WAIT
from app.tasks.base import Model

Result = TypeVar("Result")


class Runner(Admission):
    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.limiter = anyio.CapacityLimiter(max_concurrency)
        self.max_queue = max_queue
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def submit(self, name: str, model: Model, work: Callable[[Model], Result]) -> Result:
        """``work(model)`` in a worker thread once a slot is free."""
        if self.limiter.available_tokens == 0 and self._waiting >= self.max_queue:
            raise overloaded(self._waiting, "requests", "for inference")
        depth, arrived = QUEUE_DEPTH.labels(model=name, loop="single"), time.monotonic()
        self._waiting += 1
        depth.inc()
        try:
            await self.limiter.acquire()
        finally:
            self._waiting -= 1
            depth.dec()
        QUEUE_WAIT.labels(model=name, loop="single").observe(time.monotonic() - arrived)
        try:
            return await anyio.to_thread.run_sync(work, model)
        finally:
            self.limiter.release()

    async def close(self, timeout_s: float) -> None:
        """Nothing to end: each call belongs to its request, which the server drains."""
