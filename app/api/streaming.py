"""Generations over HTTP: waiting for a generation that is not streamed (a disconnect cancels it), and
server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request

from app.tasks.generation.sequence import Chunk


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
