"""End to end: `python -m app` as a real uvicorn process serving an artifact made by the real export code."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

StartServer = Callable[..., AbstractContextManager[Any]]
ServerEnv = Callable[..., dict[str, str]]


def test_real_server_serves_and_stops_cleanly(tiny_artifact: Path, start_server: StartServer) -> None:
    with start_server(tiny_artifact.parent) as server:
        ready = httpx.get(f"{server.url}/health/ready").json()
        assert ready == {"status": "ready", "models": {"tiny-sentiment": "ready"}}
        response = httpx.post(f"{server.url}/v1/sentiment", json={"texts": ["the movie was good .", "bad"]},
                              headers={"X-Request-ID": "e2e-1"})
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] == "e2e-1"
        body = response.json()
        assert body["model"] == "tiny-sentiment"
        assert [r["label"] in ("negative", "positive") for r in body["results"]] == [True, True]
        (model,) = httpx.get(f"{server.url}/v1/models").json()["models"]
        assert (model["backend"], model["device"], model["status"]) == ("onnx", "cpu", "ready")
    assert server.process.returncode == 0  # SIGTERM: drained, then a clean exit
    log = server.log.read_text()
    assert "Application shutdown complete." in log
    assert "providers in use: ['CPUExecutionProvider']" in log
    assert "[e2e-1] POST /v1/sentiment 200" in log


def test_invalid_setting_stops_start_with_clear_message(tiny_artifact: Path, server_env: ServerEnv) -> None:
    env = server_env(tiny_artifact.parent, runtime="tensorflow")
    result = subprocess.run([sys.executable, "-m", "app"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "invalid settings: APP_RUNTIME='tensorflow'" in result.stderr


def test_unavailable_cuda_stops_uvicorn_start(tiny_artifact: Path, server_env: ServerEnv) -> None:
    env = server_env(tiny_artifact.parent, device="cuda")
    result = subprocess.run([sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "start aborted: device 'cuda' requested" in result.stderr
