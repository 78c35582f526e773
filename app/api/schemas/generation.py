"""Bodies of POST /v1/generate and the OpenAI-compatible POST /v1/completions. Limits that depend on settings
or on the model (APP_MAX_NEW_TOKENS, the context window) are checked in the route with the same 422 shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOPS = 4


def _prompt(text: str) -> str:
    if not text.strip():
        raise ValueError("prompt must not be empty or whitespace only")
    return text


def stops(value: object) -> list[str]:
    """``stop`` as a list: one string, a list of strings, or nothing (a `field_validator` in mode before)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ValueError("stop must be a string or a list of strings")
    stops: list[str] = value
    if len(stops) > MAX_STOPS or any(not s for s in stops):
        raise ValueError(f"at most {MAX_STOPS} non-empty stop strings")
    return stops


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prompt": "Call me Ishmael.", "max_new_tokens": 40, "temperature": 0.8, "top_p": 0.95, "seed": 7},
        {"prompt": "The whale", "max_new_tokens": 20, "temperature": 0, "stream": True}]})

    prompt: str = Field(description="Text to continue (non-blank; its tokens must fit the context window).")
    max_new_tokens: int = Field(64, gt=0, description="Tokens to generate at most (<= APP_MAX_NEW_TOKENS).")
    temperature: float = Field(1.0, ge=0, le=5, description="0 = greedy; higher = more random.")
    top_k: int = Field(0, ge=0, description="Sample among the k most probable tokens (0 = all).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (1 = all).")
    repetition_penalty: float = Field(1.0, gt=0, le=10, description="> 1 discourages repeated tokens.")
    stop: list[str] = Field(default_factory=list, description=f"Up to {MAX_STOPS} strings that end the text "
                                                              "(not included in it).")
    seed: int | None = Field(None, ge=0, description="Same seed and parameters give the same text.")
    stream: bool = Field(False, description="true = text/event-stream: one event per chunk, then a final one.")
    model: str | None = Field(None, description="A text-generation model listed by GET /v1/models.")

    _prompt = field_validator("prompt")(staticmethod(_prompt))
    _stop = field_validator("stop", mode="before")(staticmethod(stops))


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class GenerateResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "gpt2-quick", "text": " and the sea was calm", "finish_reason": "length",
        "usage": {"prompt_tokens": 4, "completion_tokens": 6}}]})

    model: str
    text: str
    finish_reason: Literal["length", "stop"] = Field(description="stop = eos or a stop string; length = the "
                                                                 "token budget or the context window ran out.")
    usage: Usage


class CompletionRequest(BaseModel):
    """The subset of OpenAI's legacy completions API that is served; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: str
    max_tokens: int = Field(16, gt=0)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0)
    stream: bool = False
    n: int = Field(1, ge=1, le=1, description="Only 1 is supported.")

    _prompt = field_validator("prompt")(staticmethod(_prompt))
    _stop = field_validator("stop", mode="before")(staticmethod(stops))


class CompletionChoice(BaseModel):
    text: str
    index: int = 0
    logprobs: None = None
    finish_reason: Literal["length", "stop", "timeout"] | None = Field(
        description="null until the last chunk of a stream; `timeout` only ends a stream (a plain request gets "
                    "504 instead).")


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None
