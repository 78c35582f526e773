"""POST /v1/embeddings: OpenAI's embeddings API over the sentence-embedding task (the `openai` client's
``embeddings.create`` works with base_url=<here>/v1)."""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import ServiceDep
from app.api.docs import MODEL_ERRORS
from app.errors import field_error
from contract import SENTENCE_EMBEDDING

router = APIRouter(prefix="/v1", tags=["embeddings"])


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"input": ["A warm, funny film.", "Dull and far too long."], "model": "minilm-embed"}]})

    input: str | list[str] = Field(description="One text or a list of texts (token-id inputs are not supported).")
    model: str | None = Field(None, description="A sentence-embedding model listed by GET /v1/models.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes, base64-encoded.")
    dimensions: int | None = Field(None, ge=1, description="Accepted when equal to the model's dimension.")
    user: str | None = Field(None, description="Accepted and ignored.")

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


def encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.post("/embeddings", response_model=EmbeddingResponse, responses=MODEL_ERRORS,
             summary="Embed texts (OpenAI-compatible)")
async def embeddings(body: EmbeddingRequest, service: ServiceDep) -> EmbeddingResponse:
    """One unit-length vector per text, in input order (mean-pooled token states, L2-normalised). Texts beyond
    the model's `max_length` tokens are truncated; concurrent requests share batched model calls."""
    name, results = await service.predict(SENTENCE_EMBEDDING, body.model, body.texts(), ["body", "input"],
                                          isinstance(body.input, str))
    if body.dimensions is not None and results and body.dimensions != len(results[0].vector):
        raise field_error(f"model {name!r} has {len(results[0].vector)} dimensions, not {body.dimensions}",
                          ["body", "dimensions"])
    tokens = sum(r.tokens for r in results)
    return EmbeddingResponse(model=name, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens), data=[
        EmbeddingData(index=i, embedding=encode(r.vector, body.encoding_format)) for i, r in enumerate(results)])
