"""The service's one error type and its kinds: what went wrong, in domain terms (no HTTP here).

Every layer raises these; `app.api.errors` is the one place that maps each kind to an HTTP status (or to a
protocol's own envelope). ``code`` is the stable machine-readable name clients see, ``extra`` more fields.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    """An error a client may see: a stable code, a human message and optional extra fields."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class InvalidInput(ServiceError):
    """The request cannot be served as asked (``detail``: where and why, as pydantic's ``loc``/``msg``/``type``)."""

    code = "invalid_input"


def field_error(message: str, loc: list[str | int], msg: str | None = None,
                kind: str = "value_error") -> InvalidInput:
    """`InvalidInput` about one field, located as pydantic locates its own errors (``["body", "texts", 3]``)."""
    return InvalidInput(message, detail=[{"loc": loc, "msg": msg or message, "type": kind}])


def limit_error(message: str, loc: list[str | int], msg: str) -> InvalidInput:
    """`InvalidInput` for a value beyond a configured limit."""
    return field_error(message, loc, msg, "limit_exceeded")


class Unauthorized(ServiceError):
    """No or a wrong API key."""

    code = "unauthorized"


class Forbidden(ServiceError):
    """A valid key without the right to this endpoint (e.g. a user key on an admin endpoint)."""

    code = "forbidden"


class ModelNotFound(ServiceError):
    code = "model_not_found"


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"


class Overloaded(ServiceError):
    """A bounded queue is full: refused at once; the client may retry after ``retry_after_s``."""

    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.retry_after_s = retry_after_s


class NotReady(ServiceError):
    code = "not_ready"


class TimedOut(ServiceError):
    """The request did not finish within ``APP_REQUEST_TIMEOUT_S``."""

    code = "timeout"


class ReloadFailed(ServiceError):
    """A hot reload could not load the new version; the old one keeps serving."""

    code = "reload_failed"
