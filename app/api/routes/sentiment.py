"""POST /v1/sentiment: text classification (sentiment by default)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ServiceDep
from app.api.docs import MODEL_ERRORS
from app.api.schemas.requests import SentimentRequest
from app.api.schemas.responses import SentimentResponse, SentimentResult

router = APIRouter(prefix="/v1", tags=["sentiment"])


@router.post("/sentiment", response_model=SentimentResponse, responses=MODEL_ERRORS,
             summary="Classify the sentiment of one or more texts")
async def sentiment(body: SentimentRequest, service: ServiceDep) -> SentimentResponse:
    """Labels each text `negative` or `positive` with probabilities, in input order.

    Texts longer than the model's `max_length` tokens are read as `long_text` says (default
    `APP_LONG_TEXT_STRATEGY`): `truncate` (their first tokens; `truncated: true`), `head+tail` (their first and
    last tokens; `truncated: true`) or `chunks` (overlapping windows over the whole text, as rows of the same
    batched calls; `chunks` counts them). Texts longer than `APP_MAX_TEXT_CHARS` characters or
    `APP_MAX_TEXT_TOKENS` tokens, or making more than `APP_MAX_REQUEST_WINDOWS` windows together, are rejected
    (422). Concurrent requests share batched model calls (`APP_MAX_BATCH_SIZE`, `APP_BATCH_WAIT_MS`); a request
    waiting beyond `APP_REQUEST_TIMEOUT_S` gets 504.
    """
    single = body.texts is None
    name, predictions = await service.classify(body.model, body.items(), ["body", "text" if single else "texts"],
                                               single, body.long_text)
    return SentimentResponse(model=name, results=[
        SentimentResult(label=p.label, score=p.score, scores=p.scores, truncated=p.truncated, strategy=p.strategy,
                        chunks=p.chunks)
        for p in predictions])
