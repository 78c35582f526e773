"""A real `python -m app` process with API keys and JSON logs: every log line (uvicorn's too) is one JSON object."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

StartServer = Callable[..., AbstractContextManager[Any]]


def test_keys_and_json_logs(tiny_artifact: Path, start_server: StartServer) -> None:
    with start_server(tiny_artifact.parent, api_keys="e2e-key", log_format="json") as server:
        text = {"text": "the movie was good ."}
        refused = httpx.post(f"{server.url}/v1/sentiment", json=text)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        served = httpx.post(f"{server.url}/v1/sentiment", json=text,
                            headers={"Authorization": "Bearer e2e-key", "X-Request-ID": "e2e-json-1"})
        assert served.status_code == 200
        assert httpx.get(f"{server.url}/health/ready").status_code == 200
        assert 'route="/v1/sentiment",status="401"' in httpx.get(f"{server.url}/metrics").text
    raw = server.log.read_text().splitlines()
    lines = [json.loads(line) for line in raw if line.startswith("{")]
    # anything else on the process's output is not from logging (e.g. a library's warnings.warn)
    assert not [line for line in raw if not line.startswith("{") and re.search(r"\b(INFO|WARNING|ERROR)\b", line)]
    assert all({"ts", "level", "logger", "request_id", "message"} <= set(entry) for entry in lines)
    (access,) = [e for e in lines if e.get("request_id") == "e2e-json-1" and e["logger"] == "app.access"]
    assert (access["method"], access["path"], access["status"]) == ("POST", "/v1/sentiment", 200)
    assert access["duration_ms"] > 0
    assert any(e["logger"].startswith("uvicorn") and "Application startup complete" in e["message"] for e in lines)
    assert "e2e-key" not in server.log.read_text()
