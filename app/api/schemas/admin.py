"""Bodies of the admin endpoints (hot reload)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["reloaded", "added", "unchanged", "failed"]


class ModelVersion(BaseModel):
    version: str | None = Field(None, description="The artifact's created_at.")
    manifest_sha256: str | None = Field(None, description="sha256 of the manifest.json that was loaded.")


class ReloadResult(ModelVersion):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "sentiment-minilm", "outcome": "reloaded", "status": "ready",
        "version": "2025-01-02T00:00:00+00:00", "manifest_sha256": "9f86d081884c7d65...",
        "previous": {"version": "2025-01-01T00:00:00+00:00", "manifest_sha256": "2c26b46b68ffc68f..."},
        "error": None}]})

    model: str = Field(description="The model (folder name in the models dir).")
    outcome: Outcome = Field(
        description="reloaded: a new version serves; added: a new folder now serves; unchanged: its manifest "
                    "is the one served (bulk reload only); failed: see `error`, the old version (if any) serves.")
    status: str = Field(description="The model's status now: ready, or failed when no version serves.")
    previous: ModelVersion | None = Field(None, description="The version that served before, if one did.")
    error: str | None = Field(None, description="Why the new version was refused (outcome failed).")


class ReloadAllResponse(BaseModel):
    results: list[ReloadResult] = Field(description="One entry per model folder found, by name.")
