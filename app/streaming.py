"""Token streams off the event loop: a blocking iterator pulled item by item in worker threads, holding one
inference slot of the `InferenceRunner` for the whole stream (the same limits as every other inference)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import anyio.to_thread

from app.core.errors import Overloaded
from app.inference import InferenceRunner

Item = TypeVar("Item")
_DONE = object()


def check_capacity(runner: InferenceRunner) -> None:
    """429 now, before a streaming response has started, when the queue is already full."""
    if runner.limiter.available_tokens == 0 and runner.waiting >= runner.max_queue:
        raise Overloaded(f"{runner.waiting} requests already wait for inference; retry later")


async def in_thread(runner: InferenceRunner, items: Iterator[Item]) -> AsyncIterator[Item]:
    """Every item of ``items``; each ``next()`` runs in a worker thread so the event loop stays free."""
    check_capacity(runner)
    owner = object()  # the slot belongs to this stream, whichever task finally closes it
    runner.waiting += 1
    try:
        await runner.limiter.acquire_on_behalf_of(owner)
    finally:
        runner.waiting -= 1
    try:
        while True:
            item = await anyio.to_thread.run_sync(next, items, _DONE)
            if item is _DONE:
                return
            yield item  # type: ignore[misc]  # _DONE is filtered above
    finally:
        runner.limiter.release_on_behalf_of(owner)


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event: ``data: <json>`` and a blank line."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
