"""Shared by the API tests: the app on a models dir through ASGI, warm-up finished."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.registry import Registry
from app.main import create_app
from app.runtimes.onnx import OnnxRuntime
from app.settings import Settings


@contextmanager
def serve(models_dir: Path, **overrides: Any) -> Iterator[TestClient]:
    """The app (lifespan run by TestClient) on ``models_dir`` with 1 thread, once warm-up has finished."""
    settings = Settings(_env_file=None, models_dir=models_dir, threads=1, **overrides)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        registry: Registry = client.app.state.service.registry  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while not registry.warmed:
            assert time.monotonic() < deadline, "warm-up did not finish"
            time.sleep(0.02)
        yield client


@contextmanager
def warming(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, threading.Event]]:
    """The app with warm-up held back until the event is set; on leaving, waits until warm-up has finished."""
    release = threading.Event()
    warmup_all = Registry.warmup_all

    def blocked(self: Registry) -> None:
        release.wait(30)
        warmup_all(self)

    monkeypatch.setattr(Registry, "warmup_all", blocked)
    settings = Settings(_env_file=None, models_dir=models_dir, threads=1)
    with TestClient(create_app(settings)) as client:
        try:
            yield client, release
        finally:
            release.set()
            deadline = time.monotonic() + 30
            while not client.app.state.service.registry.warmed:  # type: ignore[attr-defined]
                assert time.monotonic() < deadline
                time.sleep(0.02)


@pytest.fixture
def opened_graphs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """File names of the ONNX graphs the app opens sessions on, in order, while the test runs."""
    opened: list[str] = []
    session = OnnxRuntime.session
    monkeypatch.setattr(OnnxRuntime, "session", lambda self, path, *args: opened.append(Path(path).name)
                        or session(self, path, *args))
    return opened
