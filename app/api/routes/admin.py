"""Admin endpoints (admin key only): hot reload of model artifacts from the models dir."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends
from fastapi import Path as PathParam

from app.api.deps import RegistryDep
from app.api.schemas.admin import ModelVersion, Outcome, ReloadAllResponse, ReloadResult
from app.api.schemas.responses import ErrorResponse
from app.api.security import AUTH_ERRORS, require_admin
from app.core.registry import ModelEntry, Registry
from app.errors import ReloadFailed

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)], responses={
    **AUTH_ERRORS,
    403: {"model": ErrorResponse, "description": "Not the admin key, or no admin key is configured."},
    503: {"model": ErrorResponse, "description": "The service is still starting."}})

ModelName = Annotated[str, PathParam(min_length=1, max_length=255,
                                     description="A folder of the models dir (never a path).")]


def version_of(entry: ModelEntry | None) -> ModelVersion | None:
    """The version an entry serves (None when it serves none)."""
    if entry is None or entry.artifact is None or entry.status != "ready":
        return None
    return ModelVersion(version=entry.artifact.manifest.get("created_at"),
                        manifest_sha256=entry.artifact.manifest_sha256)


def result(name: str, entry: ModelEntry | None, outcome: Outcome, previous: ModelVersion | None,
           error: str | None = None) -> ReloadResult:
    now = version_of(entry) or ModelVersion()
    return ReloadResult(model=name, outcome=outcome, status=entry.status if entry else "failed",
                        version=now.version, manifest_sha256=now.manifest_sha256, previous=previous, error=error)


def reload_one(registry: Registry, name: str) -> ReloadResult:
    """Reload ``name``; raises `ReloadFailed` (the old version keeps serving)."""
    new, old = registry.reload(name)
    return result(name, new, "added" if old is None or old.status == "building" else "reloaded", version_of(old))


@router.post("/models/{name}/reload", response_model=ReloadResult, summary="Load a new version of one model",
             responses={404: {"model": ErrorResponse, "description": "No such folder in the models dir."},
                        409: {"model": ErrorResponse, "description": "The new version was refused (`reason`); "
                                                                     "the old one keeps serving (`serving`)."}})
async def reload_model(name: ModelName, registry: RegistryDep) -> ReloadResult:
    """Re-open models/`name` (manifest schema, every sha256), load and warm a new engine, then swap it in:
    requests already running finish on the old engine. A folder not yet served is added."""
    return await anyio.to_thread.run_sync(reload_one, registry, name)


@router.post("/models/reload", response_model=ReloadAllResponse, summary="Load every new or changed model folder")
async def reload_all(registry: RegistryDep) -> ReloadAllResponse:
    """Scans the models dir: new folders are added, folders whose manifest.json differs from the served one
    (or whose model is not serving) are reloaded one at a time, the others are reported unchanged. A failure
    keeps the old version serving and is reported in its entry (the response is still 200)."""
    results: list[ReloadResult] = []
    for name, changed in (await anyio.to_thread.run_sync(registry.scan)).items():
        previous = version_of(registry.entries.get(name))
        if not changed:
            results.append(result(name, registry.entries.get(name), "unchanged", None))
            continue
        try:
            results.append(await anyio.to_thread.run_sync(reload_one, registry, name))
        except ReloadFailed as exc:
            results.append(result(name, registry.entries.get(name), "failed", previous, str(exc.extra["reason"])))
    return ReloadAllResponse(results=results)
