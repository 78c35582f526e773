"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import RegistryDep
from app.api.schemas.responses import ErrorResponse, HealthResponse
from app.errors import NotReady

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=HealthResponse, summary="The process answers")
async def live() -> HealthResponse:
    return HealthResponse(status="alive")


@router.get("/ready", response_model=HealthResponse, summary="Every model built is warmed up",
            responses={503: {"model": ErrorResponse, "description": "Still loading or warming up (models still "
                                                                    "building do not count)."}})
async def ready(registry: RegistryDep) -> HealthResponse:
    if not registry.ready:
        raise NotReady("models are not ready", models=registry.statuses())
    return HealthResponse(status="ready", models=registry.statuses())
