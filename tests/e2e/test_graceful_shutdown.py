"""SIGTERM on a real `python -m app`: stop accepting, drain what is in flight (bounded), exit 0."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

StartServer = Callable[..., AbstractContextManager[Any]]
BODY = json.dumps({"prompt": "Call me Ishmael.", "max_new_tokens": 40, "seed": 3}).encode()


class SlowUpload:
    """A POST whose body is sent in two parts: the request is in flight on the server until `finish()`."""

    def __init__(self, url: str) -> None:
        self.started, self._go_on = threading.Event(), threading.Event()
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._post, args=(url,))
        self._thread.start()
        assert self.started.wait(10), "the request did not start"
        time.sleep(0.5)  # the server has read the headers and the first part

    def _body(self) -> Iterator[bytes]:
        yield BODY[:10]
        self.started.set()
        self._go_on.wait(60)
        yield BODY[10:]

    def _post(self, url: str) -> None:
        try:
            self.response = httpx.post(url, content=self._body(), headers={"Content-Type": "application/json"},
                                       timeout=60)
        except httpx.HTTPError as exc:
            self.error = exc

    def finish(self) -> None:
        self._go_on.set()
        self._thread.join(60)


def refuses_connections(url: str, within_s: float = 10) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/health/live", timeout=2)
        except httpx.ConnectError:
            return True
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass  # accepted as the listener closed, then dropped unserved: still closing, poll again
        time.sleep(0.05)
    return False


def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0(
        tiny_lm_artifact: Path, start_server: StartServer) -> None:
    with start_server(tiny_lm_artifact.parent, shutdown_timeout_s="60") as server:
        upload = SlowUpload(f"{server.url}/v1/generate")
        server.process.send_signal(signal.SIGTERM)
        try:
            assert refuses_connections(server.url), "new connections were still accepted after SIGTERM"
            assert server.process.poll() is None, "the server exited before the request in flight finished"
        finally:
            upload.finish()
        assert upload.error is None and upload.response is not None
        assert upload.response.status_code == 200, upload.response.text
        body = upload.response.json()
        assert body["model"] == "tiny-gpt2" and body["usage"]["completion_tokens"] > 0
        assert server.process.wait(timeout=30) == 0
    log = server.log.read_text()
    assert "Application shutdown complete." in log
    assert "stopped by SIGTERM after draining" in log


def test_the_drain_is_bounded_by_the_shutdown_timeout(tiny_lm_artifact: Path, start_server: StartServer) -> None:
    with start_server(tiny_lm_artifact.parent, shutdown_timeout_s="1") as server:
        upload = SlowUpload(f"{server.url}/v1/generate")
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        try:
            assert server.process.wait(timeout=20) == 0
            assert time.monotonic() - signalled < 10
        finally:
            upload.finish()
        assert upload.response is None or upload.response.status_code != 200
    assert "timeout graceful shutdown exceeded" in server.log.read_text()
