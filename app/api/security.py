"""Optional API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, compared in constant time.

Three levels: ``user`` (/v1/*: open while no user key is configured), ``closed`` (docs or /metrics when they are
not public: any configured key; refused with 403 while none is configured) and ``admin`` (the admin key only;
refused with 403 while none is configured). A missing or unknown key is a 401 with ``WWW-Authenticate: Bearer``,
a user key on an admin endpoint a 403."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.middleware import send_error
from app.api.schemas.responses import ErrorResponse
from app.errors import Forbidden, ServiceError, Unauthorized
from app.settings import Settings

Level = Literal["user", "closed", "admin"]
Role = Literal["user", "admin"]

BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <API key>`")

DOCS_PAGES = ("/docs", "/redoc")  # FastAPIOffline's pages; the schema and OAuth2 redirect paths come from the app
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or unknown API key (only when API keys are configured)."}}


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _matches(digest: bytes, digests: tuple[bytes, ...]) -> bool:
    """Compared with every key, no early exit; equal-length digests leak neither the key nor its length."""
    found = False
    for candidate in digests:
        found |= hmac.compare_digest(digest, candidate)
    return found


@dataclass(frozen=True)
class KeyRing:
    """The configured keys, kept only as SHA-256 digests."""

    users: tuple[bytes, ...] = ()
    admins: tuple[bytes, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(users=tuple(map(_digest, settings.user_keys())),
                   admins=tuple(map(_digest, settings.admin_keys())))

    def role(self, key: str | None) -> Role | None:
        if not key:
            return None
        digest = _digest(key)
        is_admin, is_user = _matches(digest, self.admins), _matches(digest, self.users)
        return "admin" if is_admin else "user" if is_user else None


def authorize(keys: KeyRing, key: str | None, level: Level) -> None:
    """Return if ``key`` may use an endpoint of ``level``; raise `Unauthorized` (401) or `Forbidden` (403)."""
    if level == "user" and not keys.users:
        return
    if level == "admin" and not keys.admins:
        raise Forbidden("admin endpoints are closed: no admin key is configured (APP_ADMIN_API_KEY)")
    if level == "closed" and not (keys.users or keys.admins):
        raise Forbidden("this endpoint is closed by configuration and no API key is configured")
    role = keys.role(key)
    if role is None:
        raise Unauthorized("missing API key" if not key else "invalid API key", )
    if level == "admin" and role != "admin":
        raise Forbidden("this endpoint needs the admin key")


async def presented_key(connection: HTTPConnection) -> str | None:
    """The key of a request: the bearer token, else the X-API-Key header."""
    bearer = await BEARER(connection)
    return bearer.credentials if bearer is not None else await API_KEY(connection)


def keys_of(connection: HTTPConnection) -> KeyRing:
    return cast(KeyRing, connection.app.state.keys)


async def _key(bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
               api_key: Annotated[str | None, Security(API_KEY)]) -> str | None:
    return bearer.credentials if bearer is not None else api_key


KeyDep = Annotated[str | None, Depends(_key)]


async def require_api_key(request: Request, key: KeyDep) -> None:
    """Dependency of the /v1 routers: a user or admin key, when user keys are configured."""
    authorize(keys_of(request), key, "user")


async def require_admin(request: Request, key: KeyDep) -> None:
    """Dependency of admin endpoints: the admin key (403 while none is configured)."""
    authorize(keys_of(request), key, "admin")


async def require_metrics_access(request: Request, key: KeyDep) -> None:
    """Dependency of GET /metrics: open, or any configured key when ``APP_METRICS_PUBLIC=false``."""
    if not cast(Settings, request.app.state.settings).metrics_public:
        authorize(keys_of(request), key, "closed")


class DocsGate:
    """Pure ASGI: /docs, /redoc, /openapi.json (and Swagger's OAuth2 redirect) need a key when
    ``APP_DOCS_PUBLIC=false``; their static assets stay public (they hold nothing about this service)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in _docs_paths(scope):
            settings = cast(Settings | None, getattr(scope["app"].state, "settings", None))
            if settings is not None and not settings.docs_public:
                connection = HTTPConnection(scope)
                try:
                    authorize(keys_of(connection), await presented_key(connection), "closed")
                except ServiceError as exc:
                    await send_error(scope, send, exc)
                    return
        await self.app(scope, receive, send)


def _docs_paths(scope: Scope) -> tuple[str | None, ...]:
    app = scope["app"]
    return (*DOCS_PAGES, app.openapi_url, app.swagger_ui_oauth2_redirect_url)
