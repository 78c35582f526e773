"""POST /v1/generate: text continuation, as JSON or as server-sent events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from app.api.deps import RegistryDep, RunnerDep, SettingsDep
from app.backends.generation.base import Chunk, GenerationParams, Generator
from app.backends.generation.sampling import SamplingParams
from app.core.config import Settings
from app.core.errors import InvalidInput
from app.registry import Registry
from app.schemas.generation import GenerateRequest, GenerateResponse, Usage
from app.schemas.responses import ErrorResponse
from app.streaming import check_capacity, in_thread, sse

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["generation"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown model."},
    422: {"model": ErrorResponse, "description": "Invalid input, a prompt beyond the context window, or "
                                                 "max_new_tokens beyond APP_MAX_NEW_TOKENS."},
    429: {"model": ErrorResponse, "description": "Too many requests waiting for inference."},
    503: {"model": ErrorResponse, "description": "The model is not ready (loading, warming up or failed)."},
}
STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or events when `stream` is true."}}


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
async def generate(body: GenerateRequest, registry: RegistryDep, runner: RunnerDep,
                   settings: SettingsDep) -> GenerateResponse | StreamingResponse:
    """Samples up to `max_new_tokens` tokens after `prompt`. Same `seed` and parameters, same text.

    With `stream: true` the answer is `text/event-stream`: `data: {"text": ...}` per chunk, then
    `data: {"text": ..., "finish_reason": ..., "usage": {...}, "model": ...}`.
    """
    name, generator, ids = prepare(registry, settings, body.model, body.prompt, body.max_new_tokens,
                                   "max_new_tokens")
    params = GenerationParams(
        max_new_tokens=body.max_new_tokens, stop=tuple(body.stop), seed=body.seed,
        sampling=SamplingParams(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
                                repetition_penalty=body.repetition_penalty))
    check_capacity(runner)
    if body.stream:
        return StreamingResponse(_events(name, in_thread(runner, generator.stream(ids, params))),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    parts = [chunk async for chunk in in_thread(runner, generator.stream(ids, params))]
    last = parts[-1]
    assert last.finish_reason is not None
    return GenerateResponse(model=name, text="".join(p.text for p in parts), finish_reason=last.finish_reason,
                            usage=Usage(prompt_tokens=last.prompt_tokens, completion_tokens=last.completion_tokens))


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
