"""The one error type of the service and the one place that maps errors to HTTP responses."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.core.logging import REQUEST_ID_HEADER, request_id_of

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error a client may see: HTTP status, stable machine code, human message, optional extra fields."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class InvalidInput(ServiceError):
    status, code = 422, "invalid_input"


class Unauthorized(ServiceError):
    """No or a wrong API key (sent with ``WWW-Authenticate: Bearer``)."""

    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    """A valid key without the right to this endpoint (e.g. a user key on an admin endpoint)."""

    status, code = 403, "forbidden"


class ModelNotFound(ServiceError):
    status, code = 404, "model_not_found"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class Overloaded(ServiceError):
    """The bounded queue is full: refused at once (pass ``headers={"Retry-After": "1"}``)."""

    status, code = 429, "overloaded"


class NotReady(ServiceError):
    status, code = 503, "not_ready"


class TimedOut(ServiceError):
    """The request did not finish within ``APP_REQUEST_TIMEOUT_S``."""

    status, code = 504, "timeout"


class ReloadFailed(ServiceError):
    """A hot reload could not load the new version; the old one keeps serving."""

    status, code = 409, "reload_failed"


def error_body(request: Request, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, "code": code, "request_id": request_id_of(request), **extra}


def _response(request: Request, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {**(headers or {}), REQUEST_ID_HEADER: request_id_of(request)}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return _response(request, exc.status, error_body(request, exc.code, exc.message, **exc.extra), exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [{key: err[key] for key in ("loc", "msg", "type") if key in err} for err in exc.errors()]
    summary = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in detail)
    return _response(request, InvalidInput.status,
                     error_body(request, InvalidInput.code, f"invalid request: {summary}", detail=detail))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Routing and body-parsing errors (404, 405, 400 for a body that is not UTF-8) in the same JSON shape."""
    assert isinstance(exc, HTTPException)
    phrase = next((status.phrase for status in HTTPStatus if status == exc.status_code), "HTTP error")
    code = phrase.lower().replace(" ", "_")
    return _response(request, exc.status_code, error_body(request, code, str(exc.detail)), dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled %s on %s %s (request_id=%s)", type(exc).__name__, request.method, request.url.path,
              request_id_of(request), exc_info=exc)
    return _response(request, 500, error_body(request, ServiceError.code, "internal server error"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
