"""Logging with the request id on every line, and the request id plumbing shared by middleware and errors."""

from __future__ import annotations

import logging
from contextvars import ContextVar

from starlette.requests import Request

REQUEST_ID_HEADER = "X-Request-ID"
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def setup_logging(level: str) -> None:
    """Configure the ``app`` logger once (idempotent: uvicorn may import the app more than once)."""
    logger = logging.getLogger("app")
    logger.setLevel(level)
    if not any(isinstance(f, RequestIdFilter) for h in logger.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RequestIdFilter())
        logger.addHandler(handler)
        logger.propagate = False


def request_id_of(request: Request) -> str:
    """The id the middleware gave this request (also valid in handlers that run outside it)."""
    return str(request.scope.get("state", {}).get("request_id", request_id_var.get()))
