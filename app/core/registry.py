"""Every model in the models dir: discovered, verified and loaded through the contract, with a status each.

Which class serves an artifact is the task table's business (`app.tasks.TASKS`); how it runs is the runtime's
(made once from the settings). Loading is split from warm-up so that /health/ready can answer 503 meanwhile.
Models named in APP_EXPECTED_MODELS that are not there yet are listed as `building`; a folder that lands later
is added by `pick_up` (`app.core.watcher` calls it) or by an admin reload.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from app.errors import InvalidInput, ModelNotFound, NotReady, ReloadFailed
from app.metrics import MODEL_STATUS
from app.runtimes import DeviceError, Runtime, create_runtime
from app.settings import Settings, SettingsError
from app.tasks import TASKS
from app.tasks.base import Model
from contract import (
    MANIFEST,
    TEXT_CLASSIFICATION,
    Artifact,
    ArtifactError,
    discover,
    is_artifact,
    load_schema,
    open_artifact,
    sha256_file,
)

log = logging.getLogger(__name__)

Status = Literal["building", "loading", "warming", "ready", "failed"]


@dataclass
class ModelEntry:
    name: str
    path: Path
    status: Status = "loading"
    error: str | None = None
    artifact: Artifact | None = None
    model: Model | None = None


def _sha256_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _set_status(entry: ModelEntry, status: Status) -> None:
    """Change a model's status and mirror it in the MODEL_STATUS gauge (1 for this status, 0 for the others)."""
    entry.status = status
    for each in get_args(Status):
        MODEL_STATUS.labels(entry.name, each).set(1 if each == status else 0)


class Registry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.entries: dict[str, ModelEntry] = {}
        self.warmed = False
        self.runtime: Runtime | None = None
        self._reload_lock = threading.RLock()

    def load_all(self) -> None:
        """Discover, verify and load every artifact. A broken model is marked failed; a device that cannot
        be honoured raises `DeviceError` (the start must fail rather than silently use another device), an
        unknown default model `SettingsError`."""
        settings = self.settings
        self.runtime = create_runtime(settings.runtime, settings.device, settings.threads, settings.torch_dtype)
        log.info("loading models from %s with the %s runtime on %s (schema %s, %s malloc)", settings.models_dir,
                 settings.runtime, self.runtime.device, settings.schema_path, self.runtime.allocator)
        folders = discover(settings.models_dir)
        for folder in folders:
            entry = self.entries[folder.name] = ModelEntry(name=folder.name, path=folder)
            _set_status(entry, "loading")
            started = time.perf_counter()
            try:
                entry.artifact = self._open(folder)
                model = self._load(entry.artifact)
            except DeviceError:
                raise
            except Exception as exc:
                self._fail(entry, "refused" if entry.artifact is None else "failed to load", exc)
                continue
            entry.model = model
            _set_status(entry, "warming")
            self.entries.update(self._variants(entry))
            log.info("model %s loaded in %.2fs", entry.name, time.perf_counter() - started)
        if not folders:
            log.warning("no model artifacts found in %s", settings.models_dir)
        for name in settings.expected_models:
            if name not in self.entries:
                _set_status(building := ModelEntry(name, settings.models_dir / name), "building")
                self.entries[name] = building
        self.entries = dict(sorted(self.entries.items()))
        default = settings.default_model
        if default is not None and default not in self.entries:
            raise SettingsError(f"APP_DEFAULT_MODEL={default!r} is not in {settings.models_dir} "
                                f"(found {sorted(self.entries)})")

    def warmup_all(self) -> None:
        for entry in self.entries.values():
            if entry.model is None or entry.status != "warming":
                continue
            started = time.perf_counter()
            try:
                entry.model.warmup()
            except Exception as exc:
                self._fail(entry, "failed warm-up", exc)
                continue
            _set_status(entry, "ready")
            log.info("model %s ready (warm-up %.2fs)", entry.name, time.perf_counter() - started)
        self.warmed = True

    def _open(self, folder: Path) -> Artifact:
        artifact = open_artifact(folder, load_schema(self.settings.schema_path))
        if artifact.task not in TASKS:
            raise ArtifactError(f"task {artifact.task!r} is not served here (served: {sorted(TASKS)})")
        variant = self.settings.onnx_variant
        if not self.settings.serve_variants and self.settings.runtime == "onnx" and variant in artifact.onnx_variants:
            return artifact.variant(variant)  # loaded alone: no fp32 graph beside it
        return artifact

    def _load(self, artifact: Artifact) -> Model:
        assert self.runtime is not None, "load_all() makes the runtime"
        model = TASKS[artifact.task].create(artifact, self.runtime)
        model.load()
        return model

    def _variants(self, entry: ModelEntry) -> dict[str, ModelEntry]:
        """Entries `<name>-<variant>` for the other graphs of a model (e.g. int8), in the entry's status (warmed
        here if it is ready); the one named by APP_ONNX_VARIANT also serves as `<name>`. None with
        APP_SERVE_VARIANTS=false (`_open` then opened the artifact as that variant)."""
        model, found = entry.model, dict[str, ModelEntry]()
        if model is None or not self.settings.serve_variants:
            return found
        for variant in model.variants():
            twin = found[f"{entry.name}-{variant}"] = ModelEntry(f"{entry.name}-{variant}", entry.path)
            try:
                twin.model = model.with_variant(variant)
                twin.artifact = twin.model.artifact
                if entry.status == "ready":
                    twin.model.warmup()
            except Exception as exc:
                self._fail(twin, "failed to load", exc)
                continue
            _set_status(twin, entry.status)
            if variant == self.settings.onnx_variant:
                entry.artifact, entry.model = twin.artifact, twin.model
        return found

    def reload(self, name: str) -> tuple[ModelEntry, ModelEntry | None]:
        """Load the version now in models/<name> (manifest, checksums, load, warm-up) beside the serving one,
        then swap it in with one assignment: running requests finish on the old model. ``name`` must be a
        folder of the models dir. On failure the old version keeps serving and `ReloadFailed` names the
        reason. Returns the new entry and the one it replaced."""
        if not self.warmed:
            raise NotReady("models are still loading; reload after start-up")
        folder = next((f for f in discover(self.settings.models_dir) if f.name == name), None)
        if folder is None:
            raise ModelNotFound(f"no model folder {name!r} in the models dir", available=sorted(self.entries))
        with self._reload_lock:
            old, fresh, started = self.entries.get(name), ModelEntry(name=name, path=folder), time.perf_counter()
            try:
                fresh.artifact = self._open(folder)
                fresh.model = self._load(fresh.artifact)
                fresh.model.warmup()
            except Exception as exc:
                serving = old is not None and old.status == "ready"
                log.error("model %s: reload failed (%s): %s", name,
                          "the old version keeps serving" if serving else "not serving", exc)
                if not serving:
                    failed = ModelEntry(name, folder, error=str(exc))
                    _set_status(failed, "failed")
                    self.entries = {**self.entries, name: failed}
                raise ReloadFailed(f"reload of {name!r} failed: {exc}", model=name, reason=str(exc),
                                   serving=serving) from exc
            _set_status(fresh, "ready")
            self.entries = dict(sorted({**self.entries, name: fresh, **self._variants(fresh)}.items()))
        log.info("model %s %s in %.2fs: version %s (manifest sha256 %s)", name,
                 "added" if old is None or old.status == "building" else "reloaded", time.perf_counter() - started,
                 fresh.artifact.manifest.get("created_at"), fresh.artifact.manifest_sha256[:12])
        return fresh, old

    def arrived(self) -> list[str]:
        """Artifact folders (`contract.is_artifact`: published, so whole) of the models dir that are not served
        yet: unknown, or expected and still building. Failed models are not retried. Quiet about other folders,
        unlike `discover`: it runs every poll."""
        if not self.settings.models_dir.is_dir():
            return []
        try:
            return sorted(folder.name for folder in self.settings.models_dir.iterdir()
                          if is_artifact(folder) and self._new(folder.name))
        except OSError as exc:
            log.warning("cannot list the models dir %s: %s", self.settings.models_dir, exc)
            return []

    def pick_up(self, name: str) -> None:
        """Load, warm and serve models/<name> unless it was added meanwhile (an admin reload); the models already
        serving go on. A failure is logged (by `reload`) and the model listed as failed."""
        with self._reload_lock:
            if self._new(name):
                with suppress(ReloadFailed, ModelNotFound):
                    self.reload(name)

    def _new(self, name: str) -> bool:
        entry = self.entries.get(name)
        return entry is None or entry.status == "building"

    def scan(self) -> dict[str, bool]:
        """Every folder of the models dir: True when it is new, not serving, or its manifest is not the served one."""
        def served(folder: Path) -> str | None:
            entry = self.entries.get(folder.name)
            return entry.artifact.manifest_sha256 if entry and entry.status == "ready" and entry.artifact else None

        return {f.name: served(f) != _sha256_or_none(f / MANIFEST) for f in discover(self.settings.models_dir)}

    @staticmethod
    def _fail(entry: ModelEntry, what: str, exc: Exception) -> None:
        entry.error, entry.model = str(exc), None
        _set_status(entry, "failed")
        log.error("model %s %s: %s", entry.name, what, exc)

    @property
    def ready(self) -> bool:
        """Warm-up of the models found at start finished and at least one serves (failed models and those still
        building do not block readiness)."""
        return self.warmed and any(e.status == "ready" for e in self.entries.values())

    def statuses(self) -> dict[str, Status]:
        return {name: entry.status for name, entry in self.entries.items()}

    def get(self, name: str | None, task: str) -> tuple[str, Model]:
        """The named model of ``task`` (None: APP_DEFAULT_MODEL when it is of that task, else the first ready
        model of it) if it is ready to serve."""
        name, model = self._ready(name, task)
        entry = self.entries[name]
        if entry.artifact is None or entry.artifact.task != task:
            raise InvalidInput(f"model {name!r} is not a {task} model")
        return name, model

    def get_any(self, name: str | None) -> tuple[str, Model]:
        """The named model of any task if it is ready to serve; None = APP_DEFAULT_MODEL, else the first ready
        classifier, else the first ready model (by name)."""
        if name is None:
            ready = sorted((e.artifact.task != TEXT_CLASSIFICATION, n) for n, e in self.entries.items()
                           if e.status == "ready" and e.artifact is not None)
            name = self.settings.default_model or (ready[0][1] if ready else None)
            if name is None:
                raise NotReady("no model is ready to serve", models=self.statuses())
        return self._ready(name, None)

    def _ready(self, name: str | None, task: str | None) -> tuple[str, Model]:
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
        if entry.status != "ready" or entry.model is None:
            raise NotReady(f"model {name!r} is {entry.status}" + (f": {entry.error}" if entry.error else ""))
        return name, entry.model
