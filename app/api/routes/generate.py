"""POST /v1/generate: text continuation, as JSON or as server-sent events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import ServiceDep
from app.api.docs import CLIENT_CLOSED, GENERATION_ERRORS, STREAM
from app.api.schemas.generation import GenerateRequest, GenerateResponse, Usage
from app.api.streaming import collect, sse
from app.tasks.generation.sampling import SamplingParams
from app.tasks.generation.sequence import Chunk, GenerationParams

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["generation"])


@router.post("/generate", response_model=GenerateResponse, responses={**GENERATION_ERRORS, **STREAM},
             summary="Continue a prompt (optionally streamed as server-sent events)")
async def generate(body: GenerateRequest, request: Request, service: ServiceDep
                   ) -> GenerateResponse | StreamingResponse | Response:
    """Samples up to `max_new_tokens` tokens after `prompt`. Same `seed` and parameters, same text (alone or
    batched with other requests).

    With `stream: true` the answer is `text/event-stream`: `data: {"text": ...}` per chunk, then
    `data: {"text": ..., "finish_reason": ..., "usage": {...}, "model": ...}`; `finish_reason` is `timeout`
    there when APP_REQUEST_TIMEOUT_S ran out.
    """
    prompt = service.prompt(body.model, body.prompt, body.max_new_tokens, "max_new_tokens")
    params = GenerationParams(
        max_new_tokens=body.max_new_tokens, stop=tuple(body.stop), seed=body.seed,
        sampling=SamplingParams(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
                                repetition_penalty=body.repetition_penalty))
    chunks = service.generate(prompt, params, body.stream)
    if body.stream:
        return StreamingResponse(_events(prompt.model, chunks), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    final = service.finished(await collect(chunks, request))
    if final is None:
        return Response(status_code=CLIENT_CLOSED)
    reason = final.finish_reason
    assert reason in ("length", "stop")  # `finished` raised on a timeout
    return GenerateResponse(model=prompt.model, text=final.text, finish_reason=reason,
                            usage=Usage(prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens))


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
