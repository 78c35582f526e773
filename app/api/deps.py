"""Dependencies: what the lifespan put on ``app.state``."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from app.backends.generation.scheduler import Schedulers
from app.batching import Batcher
from app.core.config import Settings
from app.core.errors import NotReady
from app.inference import InferenceRunner
from app.registry import Registry


async def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_registry(request: Request) -> Registry:
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise NotReady("the service is starting")
    return cast(Registry, registry)


async def get_runner(request: Request) -> InferenceRunner:
    return cast(InferenceRunner, request.app.state.runner)


async def get_batcher(request: Request) -> Batcher:
    return cast(Batcher, request.app.state.batcher)


async def get_schedulers(request: Request) -> Schedulers:
    return cast(Schedulers, request.app.state.schedulers)


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
RunnerDep = Annotated[InferenceRunner, Depends(get_runner)]
SchedulersDep = Annotated[Schedulers, Depends(get_schedulers)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]
