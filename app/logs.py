"""Logging with the request id on every line (text for people, JSON lines for deployments), and the request id
plumbing shared by middleware and errors."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

from starlette.requests import Request

REQUEST_ID_HEADER = "X-Request-ID"
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
ACCESS_FIELDS = ("method", "path", "status", "duration_ms")

LogFormat = Literal["text", "json"]


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, request_id, message; access lines add method, path, status
    and duration_ms; a logged exception adds its traceback as ``exc_info``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name,
            "request_id": getattr(record, "request_id", request_id_var.get()), "message": record.getMessage()}
        entry.update({field: getattr(record, field) for field in ACCESS_FIELDS if hasattr(record, field)})
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler `setup_logging` installs (found again by its type, so repeated calls never add another)."""


def setup_logging(level: str, log_format: LogFormat = "text") -> None:
    """Configure the ``app`` logger; idempotent (uvicorn may import the app more than once), and a later call
    switches level and format. ``json`` also replaces the handlers of uvicorn's loggers, so every line is JSON."""
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(FORMAT)
    for name in ("app", "uvicorn") if log_format == "json" else ("app",):
        logger = logging.getLogger(name)
        handler = next((h for h in logger.handlers if isinstance(h, ServiceHandler)), None)
        if handler is None:
            handler = ServiceHandler()
            handler.addFilter(RequestIdFilter())
            logger.addHandler(handler)
        if name == "uvicorn":
            logger.handlers = [handler]
        handler.setFormatter(formatter)
        logger.setLevel(level)
        logger.propagate = False


def request_id_of(request: Request) -> str:
    """The id the middleware gave this request (also valid in handlers that run outside it)."""
    return str(request.scope.get("state", {}).get("request_id", request_id_var.get()))
