"""Runs CPU-bound inference off the event loop, a bounded number at a time, with a bounded queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from app.core.errors import Overloaded

Arg = TypeVar("Arg")
Result = TypeVar("Result")


class InferenceRunner:
    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.limiter = anyio.CapacityLimiter(max_concurrency)
        self.max_queue = max_queue
        self.waiting = 0

    async def run(self, work: Callable[[Arg], Result], arg: Arg) -> Result:
        """``work(arg)`` in a worker thread once a slot is free (e.g. ``backend.classify, texts``)."""
        if self.limiter.available_tokens == 0 and self.waiting >= self.max_queue:
            raise Overloaded(f"{self.waiting} requests already wait for inference; retry later",
                             headers={"Retry-After": "1"})
        self.waiting += 1
        try:
            await self.limiter.acquire()
        finally:
            self.waiting -= 1
        try:
            return await anyio.to_thread.run_sync(work, arg)
        finally:
            self.limiter.release()
