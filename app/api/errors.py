"""The one place that maps the service's errors to HTTP: status per error kind, headers, and the JSON body in
the envelope of the protocol a route speaks (the service's own; OpenAI's on chat completions; the Open
Inference Protocol's on /v2).

Expected errors (`ServiceError` kinds, validation, routing) become 4xx/503/504 with a clear JSON message;
anything else is logged with the request id and answered with a generic 500.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.errors import (
    Forbidden,
    InvalidInput,
    ModelNotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ReloadFailed,
    ServiceError,
    TimedOut,
    Unauthorized,
)
from app.logs import REQUEST_ID_HEADER, request_id_of

log = logging.getLogger(__name__)

STATUS: dict[type[ServiceError], int] = {
    InvalidInput: 422,
    Unauthorized: 401,
    Forbidden: 403,
    ModelNotFound: 404,
    ReloadFailed: 409,
    PayloadTooLarge: 413,
    Overloaded: 429,
    NotReady: 503,
    TimedOut: 504,
}
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def status_of(exc: ServiceError) -> int:
    """The HTTP status of an error kind (500 for the base kind)."""
    return next((status for kind, status in STATUS.items() if isinstance(exc, kind)), 500)


def headers_of(exc: ServiceError) -> dict[str, str]:
    """Headers an error kind carries: Retry-After on 429, the Bearer challenge on 401."""
    if isinstance(exc, Overloaded):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, Unauthorized):
        return dict(CHALLENGE)
    return {}


OPENAI_PATHS = ("/v1/chat/completions",)
"""Routes that answer errors in OpenAI's envelope: ``{"error": {"message", "type", "param", "code"}}``."""
KSERVE_PREFIX = "/v2"
"""Routes of the Open Inference Protocol (KServe v2): ``{"error": "<message>"}``, 400 for invalid input."""
OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
                429: "rate_limit_error"}


def error_body(request: Request, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, "code": code, "request_id": request_id_of(request), **extra}


def _respond(request: Request, status: int, code: str, message: str, extra: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    """One error response, in the envelope of the protocol the request's route speaks."""
    path = request.url.path
    if path == KSERVE_PREFIX or path.startswith(KSERVE_PREFIX + "/"):
        return _response(request, 400 if status == STATUS[InvalidInput] else status, {"error": message}, headers)
    if path in OPENAI_PATHS:
        detail = (extra or {}).get("detail") or [{}]
        param = ".".join(str(p) for p in detail[0].get("loc", ())[1:]) or None
        body = {"error": {"message": message, "type": OPENAI_TYPES.get(status, "server_error"), "param": param,
                          "code": code}}
        return _response(request, status, body, headers)
    return _response(request, status, error_body(request, code, message, **(extra or {})), headers)


def error_response(request: Request, exc: ServiceError) -> JSONResponse:
    """The error response for ``exc`` (also used outside the exception handlers, by middleware)."""
    status = status_of(exc)
    if status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return _respond(request, status, exc.code, exc.message, exc.extra, headers_of(exc))


def _response(request: Request, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {**(headers or {}), REQUEST_ID_HEADER: request_id_of(request)}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(request, exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [{key: err[key] for key in ("loc", "msg", "type") if key in err} for err in exc.errors()]
    summary = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in detail)
    return _respond(request, STATUS[InvalidInput], InvalidInput.code, f"invalid request: {summary}",
                    {"detail": detail})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Routing and body-parsing errors (404, 405, 400 for a body that is not UTF-8) in the same JSON shape."""
    assert isinstance(exc, HTTPException)
    phrase = next((status.phrase for status in HTTPStatus if status == exc.status_code), "HTTP error")
    code = phrase.lower().replace(" ", "_")
    return _respond(request, exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))


def unexpected_response(request: Request, exc: Exception) -> JSONResponse:
    """The generic 500 of an unexpected error, logged with the request id and its traceback."""
    log.error("unhandled %s on %s %s (request_id=%s)", type(exc).__name__, request.method, request.url.path,
              request_id_of(request), exc_info=exc)
    return _respond(request, 500, ServiceError.code, "internal server error")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return unexpected_response(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
