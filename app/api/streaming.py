"""Generations over HTTP: waiting for a generation that is not streamed (a disconnect cancels it), and
server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import anyio
from starlette.requests import Request

from app.tasks.generation.sequence import Chunk

Item = TypeVar("Item")


async def collect(chunks: AsyncIterator[Chunk], request: Request) -> Chunk | None:
    """The final chunk of a generation that is not streamed (its text is all the text), or None when the
    client disconnected first, which cancels the generation."""
    received = await gather(chunks, request)
    final = received[-1] if received else None
    return final if final is not None and final.finish_reason is not None else None


async def gather(items: AsyncIterator[Item], request: Request) -> list[Item] | None:
    """Every item, or None when the client disconnected first (the iteration is then cancelled)."""
    received: list[Item] = []
    complete = False
    async with anyio.create_task_group() as group:
        group.start_soon(_cancel_on_disconnect, request, group.cancel_scope)
        async for item in items:
            received.append(item)
        complete = True
        group.cancel_scope.cancel()
    return received if complete else None


async def merge(streams: Sequence[AsyncIterator[Chunk]]) -> AsyncIterator[tuple[int, Chunk]]:
    """The chunks of several generations as they come, each with the index of its generation; leaving early
    (or one generation failing) cancels them all."""
    queue: asyncio.Queue[tuple[int, Chunk | Exception | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[Chunk]) -> None:
        try:
            async for chunk in stream:
                await queue.put((index, chunk))
        except Exception as exc:
            await queue.put((index, exc))
        await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, stream)) for i, stream in enumerate(streams)]
    running = len(tasks)
    try:
        while running:
            index, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()


async def _cancel_on_disconnect(request: Request, scope: anyio.CancelScope) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event: ``data: <json>`` and a blank line."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
