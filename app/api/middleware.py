"""Pure ASGI middleware: request id, access log and request metrics; request body limit; CORS from the settings.

The settings are read from ``app.state.settings`` at request time (the lifespan loads them before the first
request), so the wiring in `app.main` does not depend on when the settings are known."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import cast

from fastapi.routing import iter_route_contexts
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response, unexpected_response
from app.errors import PayloadTooLarge, ServiceError
from app.logs import REQUEST_ID_HEADER, request_id_var
from app.metrics import IN_FLIGHT, LATENCY, REQUESTS
from app.settings import Settings

log = logging.getLogger("app.access")
VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CORS_METHODS = ("GET", "POST", "OPTIONS")
CORS_HEADERS = ("Authorization", "Content-Type", "X-API-Key", REQUEST_ID_HEADER)
CORS_EXPOSED = (REQUEST_ID_HEADER, "Retry-After")


def settings_of(scope: Scope) -> Settings | None:
    """The service's settings, None before the lifespan has loaded them."""
    return cast(Settings | None, getattr(scope["app"].state, "settings", None))


def route_template(scope: Scope) -> str:
    """The path template of the route a request goes to (``/v1/sentiment``), "other" for unknown paths: metric
    labels never carry raw paths. A method the path does not have still counts under the path's template."""
    partial = None
    for route in iter_route_contexts(scope["app"].router.routes):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(route.path_format or route.path)
        if match is Match.PARTIAL and partial is None:
            partial = str(route.path_format or route.path)
    return partial or "other"


async def send_error(scope: Scope, send: Send, exc: ServiceError) -> None:
    """Answer with the service's JSON error shape from outside the app's exception handlers."""
    await error_response(Request(scope), exc)(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class RequestIdMiddleware:
    """Accept or create ``X-Request-ID`` and echo it; one access log line and the request metrics per request.

    It also answers an unexpected exception with the generic 500 itself (when no response has started): left to
    Starlette's outermost error middleware, the exception would be re-raised to the ASGI server, which then drops
    the client's keep-alive connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = incoming if VALID_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        route = route_template(scope)
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        started = time.perf_counter()
        status, responding = 500, False
        IN_FLIGHT.labels(route).inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status, responding
            if message["type"] == "http.response.start":
                status, responding = message["status"], True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if responding:
                raise
            await unexpected_response(Request(scope), exc)(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            IN_FLIGHT.labels(route).dec()
            REQUESTS.labels(route, method, str(status)).inc()
            LATENCY.labels(route).observe(seconds)
            log.info("%s %s %d %.1fms", scope["method"], scope["path"], status, seconds * 1000,
                     extra={"method": scope["method"], "path": scope["path"], "status": status,
                            "duration_ms": round(seconds * 1000, 3)})
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """413 for a body over ``APP_MAX_BODY_BYTES``: at once by Content-Length, else (chunked) as soon as the bytes
    read exceed it; what the app answers to a body it could not finish reading is replaced by the 413."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = settings_of(scope) if scope["type"] == "http" else None
        if settings is None:
            await self.app(scope, receive, send)
            return
        limit = settings.max_body_bytes
        too_large = PayloadTooLarge(f"the request body is over the limit of {limit} bytes (APP_MAX_BODY_BYTES)",
                                    limit=limit)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await send_error(scope, send, too_large)
            return
        received, exceeded, started = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise too_large
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except PayloadTooLarge:
            if not exceeded:
                raise
        if exceeded and not started:
            await send_error(scope, send, too_large)


class SettingsCORS:
    """Starlette's `CORSMiddleware` for ``APP_CORS_ORIGINS`` (GET/POST, the auth and request id headers); while
    that list is empty nothing is added: no CORS headers, so browsers on other origins are refused."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.built: tuple[Settings, ASGIApp] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = settings_of(scope) if scope["type"] == "http" else None
        if settings is None or not settings.cors_origins:
            await self.app(scope, receive, send)
            return
        if self.built is None or self.built[0] is not settings:
            self.built = settings, CORSMiddleware(self.app, allow_origins=settings.cors_origins,
                                                  allow_methods=CORS_METHODS, allow_headers=CORS_HEADERS,
                                                  expose_headers=CORS_EXPOSED, max_age=600)
        await self.built[1](scope, receive, send)
