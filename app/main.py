"""Wiring only: the FastAPI app, its lifespan, routers, error handlers, middleware (``python -m app``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from importlib.metadata import PackageNotFoundError, version

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from app.api.errors import install_error_handlers
from app.api.middleware import BodyLimitMiddleware, RequestIdMiddleware, SettingsCORS
from app.api.routes import (
    admin,
    attention,
    chat,
    completions,
    embeddings,
    generate,
    health,
    kserve,
    metrics,
    models,
    pages,
    sentiment,
)
from app.api.security import AUTH_ERRORS, DocsGate, KeyRing, require_api_key
from app.core.registry import Registry
from app.core.service import Service
from app.core.watcher import watch
from app.logs import setup_logging
from app.runtimes import DeviceError
from app.settings import Settings, SettingsError, load_settings

log = logging.getLogger("app.main")

DESCRIPTION = """Text classification (sentiment), generation and embeddings served from the artifacts that
`training/` exports to `models/`.

A classifier reads a text beyond its `max_length` tokens as the request's `long_text` says (default
`APP_LONG_TEXT_STRATEGY`): `truncate`, `head+tail` or `chunks` (overlapping windows, logits averaged); embedders
truncate (flagged `truncated: true`). Texts beyond `APP_MAX_TEXT_CHARS` characters (or, to classify,
`APP_MAX_TEXT_TOKENS` tokens) and requests beyond `APP_MAX_BATCH_TEXTS` texts (or `APP_MAX_REQUEST_WINDOWS`
windows) are rejected with 422.

`POST /v1/attention` returns what a model attends to (JSON, or a PNG heatmap); texts beyond
`APP_MAX_ATTENTION_TOKENS` tokens are rejected with 422 there. The viewer page is at `/attention`.

Text generation: `POST /v1/generate` (JSON or server-sent events) and the OpenAI-compatible
`POST /v1/completions`; `max_new_tokens` is capped by `APP_MAX_NEW_TOKENS`.

Sentence embeddings: the OpenAI-compatible `POST /v1/embeddings` (unit-length vectors, float or base64).

Chat: the OpenAI-compatible `POST /v1/chat/completions` (the model's own chat template; OpenAI's error envelope).
`/v2/...`: the Open Inference Protocol (KServe v2, Triton's clients), JSON and binary tensor data.

Text in every field of every protocol: a lone UTF-16 surrogate (`"\\ud800"`, valid JSON but no character) is
refused (422, or 400 on `/v2`) naming the field, the index and the position; NUL and control characters are passed
as given (each model's tokenizer treats them as it was trained to); Unicode normal forms are never changed.

When API keys are configured, `/v1/*` and `/v2/*` (but `/v2/health/*`) need `Authorization: Bearer <key>` or
`X-API-Key: <key>` (Authorize)."""


async def _warm_up_then_watch(registry: Registry, started: float) -> None:
    """Warm the models found at start, then (APP_MODELS_POLL_SECONDS > 0) serve those that land later."""
    await anyio.to_thread.run_sync(registry.warmup_all)
    log.info("ready=%s %.2fs after start: %s", registry.ready, time.perf_counter() - started,
             registry.statuses())
    if registry.settings.models_poll_seconds > 0:
        await watch(registry, registry.settings.models_poll_seconds)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    started = time.perf_counter()
    try:
        settings: Settings = app.state.settings_override or load_settings()
    except SettingsError as exc:
        setup_logging("INFO")
        log.error("start aborted: %s", exc)
        raise
    setup_logging(settings.log_level, settings.log_format)
    app.state.settings = settings
    app.state.keys = KeyRing.from_settings(settings)
    registry = Registry(settings)
    try:
        await anyio.to_thread.run_sync(registry.load_all)
    except (DeviceError, SettingsError) as exc:
        log.error("start aborted: %s", exc)
        raise
    app.state.service = service = Service(settings, registry)
    service.start()
    warm_up = asyncio.create_task(_warm_up_then_watch(registry, started))
    yield
    warm_up.cancel()
    await service.close()
    with suppress(asyncio.CancelledError):
        await warm_up


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service; ``settings`` None = read them from the environment when the lifespan starts."""
    try:
        app_version = version("transformer-stack")
    except PackageNotFoundError:
        app_version = "0.0.0"
    app = FastAPIOffline(title="Transformer stack", description=DESCRIPTION, version=app_version,
                         lifespan=lifespan)
    app.state.settings_override = settings
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(DocsGate)
    app.add_middleware(SettingsCORS)
    app.add_middleware(RequestIdMiddleware)  # added last = outermost: ids, access log and metrics see everything
    for module in (sentiment, attention, generate, completions, chat, embeddings, models, kserve):
        app.include_router(module.router, dependencies=[Depends(require_api_key)], responses=AUTH_ERRORS)
    for module in (health, pages, metrics, admin):
        app.include_router(module.router)
    app.include_router(kserve.probes)
    return app


app = create_app()
