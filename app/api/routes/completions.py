"""POST /v1/completions: OpenAI's legacy completions API (the `openai` client works with base_url=<here>/v1)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from app.api.deps import RegistryDep, RunnerDep, SettingsDep
from app.api.routes.generate import ERRORS, STREAM, prepare
from app.backends.generation.base import Chunk, GenerationParams
from app.backends.generation.sampling import SamplingParams
from app.schemas.generation import Completion, CompletionChoice, CompletionRequest, CompletionUsage
from app.streaming import check_capacity, in_thread, sse

router = APIRouter(prefix="/v1", tags=["generation"])


@router.post("/completions", response_model=Completion, response_model_exclude_none=False,
             responses={**ERRORS, **STREAM}, summary="OpenAI-compatible text completion")
async def completions(body: CompletionRequest, registry: RegistryDep, runner: RunnerDep,
                      settings: SettingsDep) -> Completion | StreamingResponse:
    """`model`, `prompt` (one string), `max_tokens`, `temperature`, `top_p`, `stop`, `seed`, `stream`; `n` must
    be 1. Streams end with `data: [DONE]`."""
    name, generator, ids = prepare(registry, settings, body.model, body.prompt, body.max_tokens, "max_tokens")
    params = GenerationParams(max_new_tokens=body.max_tokens, stop=tuple(body.stop or ()), seed=body.seed,
                              sampling=SamplingParams(temperature=body.temperature, top_p=body.top_p))
    check_capacity(runner)
    completion_id, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    stream = in_thread(runner, generator.stream(ids, params))
    if body.stream:
        return StreamingResponse(_events(completion_id, created, name, stream), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    parts = [chunk async for chunk in stream]
    last = parts[-1]
    return Completion(id=completion_id, created=created, model=name, usage=_usage(last), choices=[
        CompletionChoice(text="".join(p.text for p in parts), finish_reason=last.finish_reason)])


def _usage(chunk: Chunk) -> CompletionUsage:
    return CompletionUsage(prompt_tokens=chunk.prompt_tokens, completion_tokens=chunk.completion_tokens,
                           total_tokens=chunk.prompt_tokens + chunk.completion_tokens)


async def _events(completion_id: str, created: int, name: str, stream: AsyncIterator[Chunk]) -> AsyncIterator[str]:
    async for chunk in stream:
        final = chunk.finish_reason is not None
        event = Completion(id=completion_id, created=created, model=name, usage=_usage(chunk) if final else None,
                           choices=[CompletionChoice(text=chunk.text, finish_reason=chunk.finish_reason)])
        yield sse(event.model_dump())
    yield sse("[DONE]")
