"""POST /v1/sentiment: text classification (sentiment by default)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ServiceDep
from app.api.docs import MODEL_ERRORS
from app.api.schemas.requests import SentimentRequest
from app.api.schemas.responses import SentimentResponse, SentimentResult
from contract import TEXT_CLASSIFICATION

router = APIRouter(prefix="/v1", tags=["sentiment"])


@router.post("/sentiment", response_model=SentimentResponse, responses=MODEL_ERRORS,
             summary="Classify the sentiment of one or more texts")
async def sentiment(body: SentimentRequest, service: ServiceDep) -> SentimentResponse:
    """Labels each text `negative` or `positive` with probabilities, in input order.

    Texts longer than the model's `max_length` tokens are truncated (their first tokens are read) and
    flagged `truncated: true`; texts longer than `APP_MAX_TEXT_CHARS` characters are rejected (422).
    Concurrent requests share batched model calls (`APP_MAX_BATCH_SIZE`, `APP_BATCH_WAIT_MS`); a request
    waiting beyond `APP_REQUEST_TIMEOUT_S` gets 504.
    """
    single = body.texts is None
    name, predictions = await service.predict(TEXT_CLASSIFICATION, body.model, body.items(),
                                              ["body", "text" if single else "texts"], single)
    return SentimentResponse(model=name, results=[
        SentimentResult(label=p.label, score=p.score, scores=p.scores, truncated=p.truncated)
        for p in predictions])
