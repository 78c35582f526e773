"""The error responses routes declare in the OpenAPI document (shared, so that every route says the same)."""

from __future__ import annotations

from typing import Any

from app.api.schemas.responses import ErrorResponse

Responses = dict[int | str, dict[str, Any]]

MODEL_ERRORS: Responses = {
    404: {"model": ErrorResponse, "description": "Unknown model."},
    422: {"model": ErrorResponse, "description": "Invalid input (see `detail`)."},
    429: {"model": ErrorResponse, "description": "Too many requests waiting for inference (see Retry-After)."},
    503: {"model": ErrorResponse, "description": "The model is not ready (loading, warming up or failed)."},
    504: {"model": ErrorResponse, "description": "No result within APP_REQUEST_TIMEOUT_S."},
}
GENERATION_ERRORS: Responses = {
    **MODEL_ERRORS,
    422: {"model": ErrorResponse, "description": "Invalid input, a prompt beyond the context window, or "
                                                 "max_new_tokens beyond APP_MAX_NEW_TOKENS."},
    429: {"model": ErrorResponse, "description": "APP_MAX_BATCH_SEQUENCES generations run and APP_MAX_QUEUE "
                                                 "wait for this model already (with Retry-After)."},
    504: {"model": ErrorResponse, "description": "Not finished within APP_REQUEST_TIMEOUT_S (a stream ends "
                                                 "with finish_reason `timeout` instead)."},
}
STREAM: Responses = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or events when `stream` is true."}}
CLIENT_CLOSED = 499
"""Status logged for a non-streamed generation whose client disconnected (nobody receives it)."""
