"""Request bodies. Limits that depend on settings (texts per request, characters per text) are checked in
the route and answered with the same 422 shape."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator, model_validator

from app.settings import LongTextStrategy
from app.tasks.attention import Aggregate

AGGREGATE_HELP = ("none = the selected heads as they are; mean = per selected layer the mean of the selected "
                  "heads; rollout = attention rollout (Abnar & Zuidema 2020) through the selected layers.")


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text must not be empty or whitespace only")
    return text


class SentimentRequest(BaseModel):
    """Exactly one of ``text`` or ``texts``; ``model`` defaults to the service's default model."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "A warm, funny and beautifully acted film."},
        {"texts": ["I loved every minute of it.", "Dull, predictable and far too long."],
         "model": "sentiment-minilm"},
        {"text": "A long review, read whole in overlapping windows ...", "long_text": "chunks"},
    ]})

    text: str | None = Field(None, description="One text (non-blank; at most APP_MAX_TEXT_CHARS characters).")
    texts: list[str] | None = Field(None, min_length=1,
                                    description="Several texts (1..APP_MAX_BATCH_TEXTS), answered in order.")
    model: str | None = Field(None, description="Model name as listed by GET /v1/models.")
    long_text: LongTextStrategy | None = Field(
        None, description="How a text longer than the model's max_length tokens is read: truncate = its first "
                          "tokens; head+tail = its first and last tokens (1/4 and 3/4 of the window); chunks = "
                          "overlapping windows over all of it, their logits averaged, weighted by window length. "
                          "Unset: APP_LONG_TEXT_STRATEGY.")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else _not_blank(value)

    @field_validator("texts")
    @classmethod
    def _texts(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_not_blank(text) for text in value]

    @model_validator(mode="after")
    def _one_of(self) -> SentimentRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        return self

    def items(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class AttentionRequest(BaseModel):
    """One text; ``layers``/``heads`` select (None = all, sorted, duplicates dropped) before ``aggregate``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "A warm, funny and beautifully acted film."},
        {"text": "Dull, predictable and far too long.", "model": "sentiment-minilm", "layers": [5],
         "heads": [0, 3], "aggregate": "none"},
        {"text": "Not bad at all.", "aggregate": "rollout"},
    ]})

    text: str = Field(description="One non-blank text of at most APP_MAX_ATTENTION_TOKENS tokens.")
    model: str | None = Field(None, description="Model name as listed by GET /v1/models.")
    layers: Annotated[list[NonNegativeInt] | None, Field(min_length=1)] = Field(
        None, description="Layer indices (0-based) to return; unset = all layers.")
    heads: Annotated[list[NonNegativeInt] | None, Field(min_length=1)] = Field(
        None, description="Head indices (0-based) to return in each selected layer; unset = all heads.")
    aggregate: Aggregate = Field("none", description=AGGREGATE_HELP)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return _not_blank(value)


class AttentionImageQuery(BaseModel):
    """Query of GET /v1/attention.png: one matrix, picked by ``layer``/``head`` or by ``aggregate``."""

    text: str = Field(description="One non-blank text of at most APP_MAX_ATTENTION_TOKENS tokens.")
    model: str | None = Field(None, description="Model name as listed by GET /v1/models.")
    layer: NonNegativeInt = Field(0, description="Layer shown (aggregate none or mean).")
    head: NonNegativeInt = Field(0, description="Head shown (aggregate none).")
    aggregate: Aggregate = Field("none", description="none = one head; mean = mean of the layer's heads; "
                                                     "rollout = rollout through all layers (layer/head unused).")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return _not_blank(value)

    def to_request(self) -> AttentionRequest:
        layers = None if self.aggregate == "rollout" else [self.layer]
        heads = [self.head] if self.aggregate == "none" else None
        return AttentionRequest(text=self.text, model=self.model, layers=layers, heads=heads,
                                aggregate=self.aggregate)
