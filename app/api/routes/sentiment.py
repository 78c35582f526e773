"""POST /v1/sentiment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import BatcherDep, RegistryDep, SettingsDep
from app.core.config import Settings
from app.core.errors import InvalidInput
from app.schemas.requests import SentimentRequest
from app.schemas.responses import ErrorResponse, SentimentResponse, SentimentResult

router = APIRouter(prefix="/v1", tags=["sentiment"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown model."},
    422: {"model": ErrorResponse, "description": "Invalid input (see `detail`)."},
    429: {"model": ErrorResponse, "description": "Too many requests waiting for inference (see Retry-After)."},
    503: {"model": ErrorResponse, "description": "The model is not ready (loading, warming up or failed)."},
    504: {"model": ErrorResponse, "description": "No result within APP_REQUEST_TIMEOUT_S."},
}


def limit_error(message: str, loc: list[str | int], msg: str) -> InvalidInput:
    return InvalidInput(message, detail=[{"loc": loc, "msg": msg, "type": "limit_exceeded"}])


def check_limits(texts: list[str], settings: Settings) -> None:
    count, chars = settings.max_batch_texts, settings.max_text_chars
    if len(texts) > count:
        raise limit_error(f"too many texts: {len(texts)} > {count}", ["body", "texts"],
                           f"at most {count} texts")
    for index, text in enumerate(texts):
        if len(text) > chars:
            raise limit_error(f"text {index} is too long: {len(text)} > {chars} characters",
                               ["body", "texts", index], f"at most {chars} characters")


@router.post("/sentiment", response_model=SentimentResponse, responses=ERRORS,
             summary="Classify the sentiment of one or more texts")
async def sentiment(body: SentimentRequest, registry: RegistryDep, batcher: BatcherDep,
                    settings: SettingsDep) -> SentimentResponse:
    """Labels each text `negative` or `positive` with probabilities, in input order.

    Texts longer than the model's `max_length` tokens are truncated (their first tokens are read) and
    flagged `truncated: true`; texts longer than `APP_MAX_TEXT_CHARS` characters are rejected (422).
    Concurrent requests share batched model calls (`APP_MAX_BATCH_SIZE`, `APP_BATCH_WAIT_MS`); a request
    waiting beyond `APP_REQUEST_TIMEOUT_S` gets 504.
    """
    texts = body.items()
    check_limits(texts, settings)
    name, backend = registry.get(body.model)
    predictions = await batcher.classify(name, backend, texts)
    return SentimentResponse(model=name, results=[
        SentimentResult(label=p.label, score=p.score, scores=p.scores, truncated=p.truncated)
        for p in predictions])
