"""Generations on the event loop: submit to a model's `Scheduler` and receive its chunks through an asyncio
queue (the scheduler thread hands each over with ``call_soon_threadsafe``). Leaving early cancels the generation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from starlette.requests import Request

from app.backends.generation.scheduler import Scheduler, Ticket
from app.backends.generation.sequence import Chunk, GenerationParams


def submit(scheduler: Scheduler, prompt_ids: Sequence[int], params: GenerationParams, timeout_s: float,
           streamed: bool) -> AsyncIterator[Chunk]:
    """Queue the generation now (`Overloaded` here, before any response has started) and return its chunks;
    the last one has ``finish_reason``. Closing the iterator early (a disconnect, a cancelled task) cancels it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Chunk | Exception] = asyncio.Queue()

    def deliver(item: Chunk | Exception) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    ticket = scheduler.submit(prompt_ids, params, deliver, time.monotonic() + timeout_s, streamed)
    return _chunks(queue, ticket)


async def _chunks(queue: asyncio.Queue[Chunk | Exception], ticket: Ticket) -> AsyncIterator[Chunk]:
    try:
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            yield item
            if item.finish_reason is not None:
                return
    finally:
        ticket.cancel()


async def collect(chunks: AsyncIterator[Chunk], request: Request) -> Chunk | None:
    """The final chunk of a generation that is not streamed (its text is all the text), or None when the
    client disconnected first, which cancels the generation."""
    final: Chunk | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(_cancel_on_disconnect, request, group.cancel_scope)
        async for chunk in chunks:
            final = chunk
        group.cancel_scope.cancel()
    return final if final is not None and final.finish_reason is not None else None


async def _cancel_on_disconnect(request: Request, scope: anyio.CancelScope) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event: ``data: <json>`` and a blank line."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
