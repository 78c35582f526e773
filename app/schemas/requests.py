"""Request bodies. Limits that depend on settings (texts per request, characters per text) are checked in
the route and answered with the same 422 shape."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
    ]})

    text: str | None = Field(None, description="One text (non-blank; at most APP_MAX_TEXT_CHARS characters).")
    texts: list[str] | None = Field(None, min_length=1,
                                    description="Several texts (1..APP_MAX_BATCH_TEXTS), answered in order.")
    model: str | None = Field(None, description="Model name as listed by GET /v1/models.")

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
