"""GET /v1/models and /v1/models/{name}: our own fields and OpenAI's (``models.list()`` / ``retrieve()``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from app.api.deps import RegistryDep
from app.api.schemas.responses import ErrorResponse, ModelInfo, ModelsResponse
from app.core.registry import ModelEntry
from app.errors import ModelNotFound

router = APIRouter(prefix="/v1", tags=["models"])


def describe(entry: ModelEntry, runtime_name: str) -> ModelInfo:
    info = ModelInfo(id=entry.name, name=entry.name, status=entry.status, error=entry.error, backend=runtime_name)
    if entry.artifact is not None:
        manifest = entry.artifact.manifest
        info.created = _unix_time(manifest.get("created_at"))
        info.task, info.labels = entry.artifact.task, entry.artifact.labels
        info.max_length = entry.artifact.max_length
        info.version, info.schema_version = manifest.get("created_at"), manifest.get("schema_version")
        info.manifest_sha256 = entry.artifact.manifest_sha256
        info.metrics = dict(manifest.get("metrics", {}))
    if entry.model is not None:
        info.capabilities = list(entry.model.capabilities)
        runtime = entry.model.info
        info.device = runtime.pop("device")
        runtime.pop("backend")
        info.runtime = runtime
    return info


def _unix_time(created_at: object) -> int:
    try:
        return int(datetime.fromisoformat(str(created_at)).timestamp())
    except ValueError:
        return 0


@router.get("/models", response_model=ModelsResponse, summary="Every discovered model and its status")
async def list_models(registry: RegistryDep) -> ModelsResponse:
    models = [describe(e, registry.settings.runtime) for e in registry.entries.values()]
    return ModelsResponse(data=models, models=models)


@router.get("/models/{name}", response_model=ModelInfo, summary="One model and its status",
            responses={404: {"model": ErrorResponse, "description": "Unknown model."}})
async def get_model(name: str, registry: RegistryDep) -> ModelInfo:
    entry = registry.entries.get(name)
    if entry is None:
        raise ModelNotFound(f"unknown model {name!r}", available=sorted(registry.entries))
    return describe(entry, registry.settings.runtime)
