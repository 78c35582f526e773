"""POST /v1/generate: text continuation, as JSON or as server-sent events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import RegistryDep, SchedulersDep, SettingsDep
from app.backends.generation.base import Generator
from app.backends.generation.sampling import SamplingParams
from app.backends.generation.sequence import Chunk, GenerationParams
from app.core.config import Settings
from app.core.errors import InvalidInput, TimedOut
from app.registry import Registry
from app.schemas.generation import GenerateRequest, GenerateResponse, Usage
from app.schemas.responses import ErrorResponse
from app.streaming import collect, sse, submit

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["generation"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown model."},
    422: {"model": ErrorResponse, "description": "Invalid input, a prompt beyond the context window, or "
                                                 "max_new_tokens beyond APP_MAX_NEW_TOKENS."},
    429: {"model": ErrorResponse, "description": "APP_MAX_BATCH_SEQUENCES generations run and APP_MAX_QUEUE "
                                                 "wait for this model already (with Retry-After)."},
    503: {"model": ErrorResponse, "description": "The model is not ready (loading, warming up or failed)."},
    504: {"model": ErrorResponse, "description": "Not finished within APP_REQUEST_TIMEOUT_S (a stream ends "
                                                 "with finish_reason `timeout` instead)."},
}
STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or events when `stream` is true."}}
CLIENT_CLOSED = 499
"""Status logged for a non-streamed generation whose client disconnected (nobody receives it)."""


def _limit(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, detail=[{"loc": ["body", field], "msg": message, "type": "limit_exceeded"}])


def prepare(registry: Registry, settings: Settings, model: str | None, prompt: str, max_new_tokens: int,
            new_tokens_field: str) -> tuple[str, Generator, list[int]]:
    """The generator and the prompt's token ids, once every limit that needs settings or the model holds."""
    cap = settings.max_new_tokens
    if max_new_tokens > cap:
        raise _limit(new_tokens_field, f"{new_tokens_field} {max_new_tokens} is above the limit of {cap}")
    name, generator = registry.get_generator(model)
    ids = generator.encode(prompt)
    if not ids:
        raise _limit("prompt", "the prompt encodes to no tokens")
    if len(ids) >= generator.context_length:
        raise _limit("prompt", f"the prompt has {len(ids)} tokens; model {name!r} reads at most "
                               f"{generator.context_length - 1} before generating")
    return name, generator, ids


@router.post("/generate", response_model=GenerateResponse, responses={**ERRORS, **STREAM},
             summary="Continue a prompt (optionally streamed as server-sent events)")
async def generate(body: GenerateRequest, request: Request, registry: RegistryDep, schedulers: SchedulersDep,
                   settings: SettingsDep) -> GenerateResponse | StreamingResponse | Response:
    """Samples up to `max_new_tokens` tokens after `prompt`. Same `seed` and parameters, same text (alone or
    batched with other requests).

    With `stream: true` the answer is `text/event-stream`: `data: {"text": ...}` per chunk, then
    `data: {"text": ..., "finish_reason": ..., "usage": {...}, "model": ...}`; `finish_reason` is `timeout`
    there when APP_REQUEST_TIMEOUT_S ran out.
    """
    name, generator, ids = prepare(registry, settings, body.model, body.prompt, body.max_new_tokens,
                                   "max_new_tokens")
    params = GenerationParams(
        max_new_tokens=body.max_new_tokens, stop=tuple(body.stop), seed=body.seed,
        sampling=SamplingParams(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
                                repetition_penalty=body.repetition_penalty))
    chunks = submit(schedulers.get(name, generator), ids, params, settings.request_timeout_s, body.stream)
    if body.stream:
        return StreamingResponse(_events(name, chunks), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    final = finished(await collect(chunks, request), settings)
    if final is None:
        return Response(status_code=CLIENT_CLOSED)
    reason = final.finish_reason
    assert reason in ("length", "stop")  # `finished` raised on a timeout
    return GenerateResponse(model=name, text=final.text, finish_reason=reason,
                            usage=Usage(prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens))


def finished(final: Chunk | None, settings: Settings) -> Chunk | None:
    """The final chunk of a non-streamed generation; `TimedOut` when it ran out of time."""
    if final is not None and final.finish_reason == "timeout":
        raise TimedOut(f"the generation did not finish within {settings.request_timeout_s:g} s",
                       completion_tokens=final.completion_tokens)
    return final


async def _events(name: str, stream: AsyncIterator[Chunk]) -> AsyncIterator[str]:
    try:
        async for chunk in stream:
            if chunk.finish_reason is None:
                yield sse({"text": chunk.text})
            else:
                yield sse({"text": chunk.text, "finish_reason": chunk.finish_reason, "model": name,
                           "usage": {"prompt_tokens": chunk.prompt_tokens,
                                     "completion_tokens": chunk.completion_tokens}})
    except Exception as exc:  # the status line is sent already: report in-band, log the cause
        log.error("generation with %s failed mid-stream", name, exc_info=exc)
        yield sse({"error": "generation failed", "code": "internal_error"})
