"""Runs CPU-bound inference off the event loop, a bounded number at a time, with a bounded queue."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
import anyio.to_thread

from app.backends.text import Prediction
from app.core.errors import Overloaded


class InferenceRunner:
    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.limiter = anyio.CapacityLimiter(max_concurrency)
        self.max_queue = max_queue
        self.waiting = 0

    async def run(self, classify: Callable[[Sequence[str]], list[Prediction]],
                  texts: Sequence[str]) -> list[Prediction]:
        if self.limiter.available_tokens == 0 and self.waiting >= self.max_queue:
            raise Overloaded(f"{self.waiting} requests already wait for inference; retry later")
        self.waiting += 1
        try:
            await self.limiter.acquire()
        finally:
            self.waiting -= 1
        try:
            return await anyio.to_thread.run_sync(classify, texts)
        finally:
            self.limiter.release()
