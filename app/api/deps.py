"""Dependencies: what the lifespan put on ``app.state``."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from app.core.registry import Registry
from app.core.service import Service
from app.errors import NotReady
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_service(request: Request) -> Service:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("the service is starting")
    return cast(Service, service)


async def get_registry(request: Request) -> Registry:
    return (await get_service(request)).registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[Service, Depends(get_service)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
