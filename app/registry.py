"""Every model in the models dir: discovered, verified and loaded through the contract, with a status each."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.artifacts import Artifact, discover, load_schema, open_artifact
from app.backends import backend_class
from app.backends.base import Backend, DeviceError
from app.backends.engine import Engine
from app.backends.generation import generator_class
from app.backends.generation.base import Generator
from app.core.config import Settings, SettingsError
from app.core.errors import InvalidInput, ModelNotFound, NotReady

log = logging.getLogger(__name__)

Status = Literal["loading", "warming", "ready", "failed"]
SERVED_TASKS = {"sentiment", "text-generation"}


@dataclass
class ModelEntry:
    name: str
    path: Path
    status: Status = "loading"
    error: str | None = None
    artifact: Artifact | None = None
    backend: Engine | None = None


class Registry:
    """Loading is split in two so that /health/ready can report 503 while warm-up runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.entries: dict[str, ModelEntry] = {}
        self.warmed = False

    def load_all(self) -> None:
        """Discover, verify and load every artifact. A broken model is marked failed; a device that cannot
        be honoured raises `DeviceError` (the start must fail rather than silently use another device), an
        unknown default model `SettingsError`."""
        settings = self.settings
        engine = backend_class(settings.backend)
        device = engine.resolve_device(settings.device, settings.torch_dtype)
        schema = load_schema(settings.schema_path)
        log.info("loading models from %s with the %s backend on %s (schema %s)", settings.models_dir,
                 settings.backend, device, settings.schema_path)
        for folder in discover(settings.models_dir):
            entry = self.entries[folder.name] = ModelEntry(name=folder.name, path=folder)
            started = time.perf_counter()
            try:
                entry.artifact = open_artifact(folder, schema)
                if entry.artifact.task not in SERVED_TASKS:
                    raise ValueError(f"task {entry.artifact.task!r} is not served here")
                kind = engine if entry.artifact.task == "sentiment" else generator_class(settings.backend)
                backend = kind(entry.artifact, device, settings.threads, settings.torch_dtype)
                backend.load()
            except DeviceError:
                raise
            except Exception as exc:
                self._fail(entry, "refused" if entry.artifact is None else "failed to load", exc)
                continue
            entry.backend, entry.status = backend, "warming"
            log.info("model %s loaded in %.2fs", entry.name, time.perf_counter() - started)
        if not self.entries:
            log.warning("no model artifacts found in %s", settings.models_dir)
        default = settings.default_model
        if default is not None and default not in self.entries:
            raise SettingsError(f"APP_DEFAULT_MODEL={default!r} is not in {settings.models_dir} "
                                f"(found {sorted(self.entries)})")

    def warmup_all(self) -> None:
        for entry in self.entries.values():
            if entry.backend is None or entry.status != "warming":
                continue
            started = time.perf_counter()
            try:
                entry.backend.warmup()
            except Exception as exc:
                self._fail(entry, "failed warm-up", exc)
                continue
            entry.status = "ready"
            log.info("model %s ready (warm-up %.2fs)", entry.name, time.perf_counter() - started)
        self.warmed = True

    @staticmethod
    def _fail(entry: ModelEntry, what: str, exc: Exception) -> None:
        entry.status, entry.error, entry.backend = "failed", str(exc), None
        log.error("model %s %s: %s", entry.name, what, exc)

    @property
    def ready(self) -> bool:
        """Warm-up finished and at least one model serves (failed models do not block readiness)."""
        return self.warmed and any(e.status == "ready" for e in self.entries.values())

    def statuses(self) -> dict[str, Status]:
        return {name: entry.status for name, entry in self.entries.items()}

    def get(self, name: str | None) -> tuple[str, Backend]:
        """The named sentiment model (or the default one) if it is ready to serve."""
        name, backend = self._ready(name, "sentiment")
        if not isinstance(backend, Backend):
            raise InvalidInput(f"model {name!r} is not a sentiment model")
        return name, backend

    def get_generator(self, name: str | None) -> tuple[str, Generator]:
        """The named text generator (or the first ready one) if it is ready to serve."""
        name, backend = self._ready(name, "text-generation")
        if not isinstance(backend, Generator):
            raise InvalidInput(f"model {name!r} is not a text-generation model")
        return name, backend

    def _ready(self, name: str | None, task: str) -> tuple[str, Engine]:
        if name is None:
            default = self.settings.default_model
            entry = self.entries.get(default) if default is not None else None
            if entry is not None and (entry.artifact is None or entry.artifact.task == task):
                name = default
            else:
                name = next((n for n, e in self.entries.items() if e.status == "ready"
                             and e.artifact is not None and e.artifact.task == task), None)
            if name is None:
                raise NotReady(f"no {task} model is ready to serve", models=self.statuses())
        entry = self.entries.get(name)
        if entry is None:
            raise ModelNotFound(f"unknown model {name!r}", available=sorted(self.entries))
        if entry.status != "ready" or entry.backend is None:
            raise NotReady(f"model {name!r} is {entry.status}" + (f": {entry.error}" if entry.error else ""))
        return name, entry.backend
