"""GET /v1/models."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import RegistryDep
from app.api.schemas.responses import ModelInfo, ModelsResponse
from app.core.registry import ModelEntry

router = APIRouter(prefix="/v1", tags=["models"])


def describe(entry: ModelEntry, runtime_name: str) -> ModelInfo:
    info = ModelInfo(name=entry.name, status=entry.status, error=entry.error, backend=runtime_name)
    if entry.artifact is not None:
        manifest = entry.artifact.manifest
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


@router.get("/models", response_model=ModelsResponse, summary="Every discovered model and its status")
async def list_models(registry: RegistryDep) -> ModelsResponse:
    return ModelsResponse(models=[describe(e, registry.settings.runtime) for e in registry.entries.values()])
