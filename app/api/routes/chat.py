"""POST /v1/chat/completions: OpenAI's chat completions API over the text-generation task (the `openai` client's
``chat.completions.create`` works with base_url=<here>/v1). The prompt is the model's own chat template applied
to the messages; errors come in OpenAI's envelope (`app.api.errors`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.api.deps import ServiceDep, SettingsDep
from app.api.docs import CLIENT_CLOSED, GENERATION_ERRORS, STREAM
from app.api.schemas.generation import stops
from app.api.streaming import gather, merge, sse
from app.core.service import Prompt, Service
from app.tasks.generation.sampling import SamplingParams
from app.tasks.generation.sequence import Chunk, GenerationParams

router = APIRouter(prefix="/v1", tags=["generation"])
MAX_CHOICES = 8


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(description="A string, or a list of text parts (joined).")
    name: str | None = None

    def as_template_input(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The served subset of OpenAI's chat completions; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"model": "smollm2-135m-instruct", "messages": [{"role": "system", "content": "You are concise."},
                                                         {"role": "user", "content": "Name a large whale."}],
         "max_tokens": 32, "temperature": 0.7, "seed": 1},
        {"messages": [{"role": "user", "content": "Hello"}], "stream": True, "n": 2,
         "stream_options": {"include_usage": True}}]})

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0, description="Wins over max_tokens when both are set.")
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, ge=0, description="Choice i is sampled with seed + i.")
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, description="Accepted and ignored.")

    _stop = field_validator("stop", mode="before")(staticmethod(stops))


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: ChatUsage
    system_fingerprint: None = None


def _params(body: ChatRequest, max_tokens: int, index: int) -> GenerationParams:
    seed = None if body.seed is None else body.seed + index
    return GenerationParams(max_new_tokens=max_tokens, stop=tuple(body.stop or ()), seed=seed,
                            sampling=SamplingParams(temperature=body.temperature, top_p=body.top_p))


async def _start(service: Service, prompt: Prompt, body: ChatRequest, max_tokens: int,
                 streamed: bool) -> list[AsyncIterator[Chunk]]:
    """Start the ``n`` generations (all or none: a refusal of one cancels those already started)."""
    streams: list[AsyncIterator[Chunk]] = []
    try:
        for index in range(body.n):
            streams.append(service.generate(prompt, _params(body, max_tokens, index), streamed))
    except BaseException:
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
        raise
    return streams


def _usage(prompt: Prompt, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": len(prompt.ids), "completion_tokens": completion_tokens,
            "total_tokens": len(prompt.ids) + completion_tokens}


@router.post("/chat/completions", response_model=ChatCompletion, responses={**GENERATION_ERRORS, **STREAM},
             summary="OpenAI-compatible chat completion")
async def chat_completions(body: ChatRequest, request: Request, service: ServiceDep,
                           settings: SettingsDep) -> ChatCompletion | StreamingResponse | Response:
    """The assistant's next message after `messages` (system / user / assistant; content a string or text
    parts), rendered with the model's own chat template: a model without one is refused (422). `n` choices are
    sampled with seeds `seed + i`. `stream: true` sends `chat.completion.chunk` events (the role first, then
    content deltas, then each choice's `finish_reason`; with `stream_options.include_usage` a last chunk with
    `usage` and no choices) and `data: [DONE]`. Errors use OpenAI's `{"error": {...}}` envelope."""
    field = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    max_tokens = body.max_completion_tokens or body.max_tokens or settings.max_new_tokens
    prompt = service.chat_prompt(body.model, [m.as_template_input() for m in body.messages], max_tokens, field)
    streams = await _start(service, prompt, body, max_tokens, body.stream)
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    head = {"id": completion_id, "created": created, "model": prompt.model}
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(_events(head, prompt, streams, usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    received = await gather(merge(streams), request)
    if received is None:
        return Response(status_code=CLIENT_CLOSED)
    finals = [chunk for _, chunk in sorted(((i, c) for i, c in received if c.finish_reason is not None),
                                           key=lambda pair: pair[0])]
    for final in finals:
        service.finished(final)  # a generation that ran out of time: 504
    choices = [Choice(index=index, message=AssistantMessage(content=final.text), finish_reason=final.finish_reason)
               for index, final in enumerate(finals)]
    completion_tokens = sum(final.completion_tokens for final in finals)
    return ChatCompletion(**head, choices=choices, usage=ChatUsage(**_usage(prompt, completion_tokens)))


async def _events(head: dict[str, Any], prompt: Prompt, streams: list[AsyncIterator[Chunk]],
                  include_usage: bool) -> AsyncIterator[str]:
    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
        event = {**head, "object": "chat.completion.chunk", "system_fingerprint": None, "choices": choices}
        if include_usage:
            event["usage"] = usage
        return sse(event)

    def choice(index: int, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    yield chunk([choice(i, {"role": "assistant", "content": ""}) for i in range(len(streams))])
    completion_tokens = 0
    async for index, item in merge(streams):
        if item.text:
            yield chunk([choice(index, {"content": item.text})])
        if item.finish_reason is not None:
            completion_tokens += item.completion_tokens
            yield chunk([choice(index, {}, item.finish_reason)])
    if include_usage:
        yield chunk([], _usage(prompt, completion_tokens))
    yield sse("[DONE]")
