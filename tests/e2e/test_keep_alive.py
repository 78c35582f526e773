"""An unexpected error is answered with the generic 500 by the app itself, so uvicorn keeps the client's
keep-alive connection: the next request on the same connection is served (before, the exception reached the
ASGI server, which dropped the connection and the client's next request failed with a reset)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from app.main import create_app
from app.settings import Settings
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.slow


def test_a_500_leaves_the_connection_usable(tiny_artifact: Path) -> None:
    app = create_app(Settings(_env_file=None, models_dir=tiny_artifact.parent, threads=1))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not (server.started and app.state.service.registry.warmed):
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        model = app.state.service.registry.entries["tiny-sentiment"].model
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body, headers = json.dumps({"text": "fine"}), {"content-type": "application/json", "X-Request-ID": "ka-1"}
        original = model.predict
        model.predict = lambda texts: 1 / 0  # type: ignore[method-assign]
        connection.request("POST", "/v1/sentiment", body, headers)
        failed = connection.getresponse()
        assert failed.status == 500
        assert json.loads(failed.read()) == {"error": "internal server error", "code": "internal_error",
                                             "request_id": "ka-1"}
        model.predict = original  # type: ignore[method-assign]
        socket_before = connection.sock
        connection.request("POST", "/v1/sentiment", body, {"content-type": "application/json"})
        served = connection.getresponse()
        assert served.status == 200 and json.loads(served.read())["results"][0]["label"]
        assert connection.sock is socket_before  # the same TCP connection, not a reconnect
    finally:
        server.should_exit = True
        thread.join(30)
