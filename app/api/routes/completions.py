"""POST /v1/completions: OpenAI's legacy completions API (the `openai` client works with base_url=<here>/v1)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import ServiceDep
from app.api.docs import CLIENT_CLOSED, GENERATION_ERRORS, STREAM
from app.api.schemas.generation import Completion, CompletionChoice, CompletionRequest, CompletionUsage
from app.api.streaming import collect, sse
from app.tasks.generation.sampling import SamplingParams
from app.tasks.generation.sequence import Chunk, GenerationParams

router = APIRouter(prefix="/v1", tags=["generation"])


@router.post("/completions", response_model=Completion, response_model_exclude_none=False,
             responses={**GENERATION_ERRORS, **STREAM}, summary="OpenAI-compatible text completion")
async def completions(body: CompletionRequest, request: Request, service: ServiceDep
                      ) -> Completion | StreamingResponse | Response:
    """`model`, `prompt` (one string), `max_tokens`, `temperature`, `top_p`, `stop`, `seed`, `stream`; `n` must
    be 1. Streams end with `data: [DONE]`; their last choice has `finish_reason` `timeout` when
    APP_REQUEST_TIMEOUT_S ran out (the `openai` client passes it through)."""
    prompt = service.prompt(body.model, body.prompt, body.max_tokens, "max_tokens")
    params = GenerationParams(max_new_tokens=body.max_tokens, stop=tuple(body.stop or ()), seed=body.seed,
                              sampling=SamplingParams(temperature=body.temperature, top_p=body.top_p))
    chunks = service.generate(prompt, params, body.stream)
    name = prompt.model
    completion_id, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if body.stream:
        return StreamingResponse(_events(completion_id, created, name, chunks), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    final = service.finished(await collect(chunks, request))
    if final is None:
        return Response(status_code=CLIENT_CLOSED)
    return Completion(id=completion_id, created=created, model=name, usage=_usage(final), choices=[
        CompletionChoice(text=final.text, finish_reason=final.finish_reason)])


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
