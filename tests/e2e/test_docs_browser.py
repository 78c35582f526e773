"""Headless Chromium renders /docs (Swagger UI) and /redoc from locally served assets, network blocked."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
# Every host name resolves to nothing except the server's loopback address, and any proxied request goes
# to a closed port: a CDN asset could not load.
NO_NETWORK = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=127.0.0.1:9",
              "--proxy-bypass-list=127.0.0.1"]


def chromium(profile: Path, *args: str) -> str:
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", *NO_NETWORK,
               "--virtual-time-budget=20000", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


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
