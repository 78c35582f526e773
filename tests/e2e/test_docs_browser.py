"""Headless Chromium renders /docs (Swagger UI) and /redoc from locally served assets, network blocked."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CHROMIUM, chromium

pytestmark = pytest.mark.slow


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_docs_render_offline(tiny_artifact: Path, tmp_path: Path,
                             start_server: Callable[..., AbstractContextManager[Any]]) -> None:
    with start_server(tiny_artifact.parent) as server:
        swagger = chromium(tmp_path / "profile", "--dump-dom", f"{server.url}/docs")
        assert 'class="opblock opblock-post' in swagger
        assert "/v1/sentiment" in swagger and "/v1/models" in swagger and "/health/ready" in swagger
        redoc = chromium(tmp_path / "profile", "--dump-dom", f"{server.url}/redoc")
        assert "Classify the sentiment of one or more texts" in redoc
        shot = tmp_path / "docs.png"
        chromium(tmp_path / "profile", "--window-size=1280,1600", f"--screenshot={shot}",
                 f"{server.url}/docs")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000
