"""Pure ASGI middleware on a small app: body limit (Content-Length and chunked), request metrics by route
template, JSON log lines with the request id."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import BaseModel

from app.api.errors import install_error_handlers
from app.api.middleware import BodyLimitMiddleware, RequestIdMiddleware, route_template
from app.logs import JsonFormatter, RequestIdFilter, ServiceHandler, request_id_var, setup_logging
from app.settings import Settings

LIMIT = 1024


class Note(BaseModel):
    text: str


@pytest.fixture(scope="module")
def app() -> FastAPI:
    app = FastAPI()
    app.state.settings = Settings(_env_file=None, max_body_bytes=LIMIT)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestIdMiddleware)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/notes")
    async def notes(note: Note) -> dict[str, int]:
        return {"chars": len(note.text)}

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    return app


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def chunks(total: int, size: int = 256) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


def assert_413(response: object) -> None:
    assert response.status_code == 413  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["code"] == "payload_too_large" and body["limit"] == LIMIT and "APP_MAX_BODY_BYTES" in body["error"]
    assert body["request_id"] == response.headers["X-Request-ID"] == "big-1"  # type: ignore[attr-defined]


def test_body_at_the_limit_passes(client: TestClient) -> None:
    assert client.post("/echo", content=b"x" * LIMIT).json() == {"bytes": LIMIT}
    assert client.post("/echo", content=chunks(LIMIT)).json() == {"bytes": LIMIT}


def test_content_length_over_the_limit_is_refused_at_once(client: TestClient) -> None:
    response = client.post("/echo", content=b"x" * (LIMIT + 1), headers={"X-Request-ID": "big-1"})
    assert response.request.headers["content-length"] == str(LIMIT + 1)
    assert_413(response)


@pytest.mark.parametrize("path", ["/echo", "/notes"])
def test_chunked_body_over_the_limit_is_counted(client: TestClient, path: str) -> None:
    # no Content-Length: the bytes are counted as they arrive; /notes is FastAPI's body parsing, which would
    # turn the failed read into a 400 that the middleware replaces
    response = client.post(path, content=chunks(4 * LIMIT), headers={"X-Request-ID": "big-1",
                                                                     "content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_413(response)


def count(route: str, method: str, status: str) -> float:
    value = REGISTRY.get_sample_value("app_requests_total", {"route": route, "method": method, "status": status})
    return value or 0.0


def test_metrics_are_labelled_by_route_template(client: TestClient, app: FastAPI) -> None:
    before = {key: count(*key) for key in [("/items/{item_id}", "GET", "200"), ("other", "GET", "404"),
                                           ("/echo", "GET", "405"), ("/echo", "POST", "413")]}
    latency = REGISTRY.get_sample_value("app_request_duration_seconds_count", {"route": "/items/{item_id}"}) or 0
    client.get("/items/secret-user-data")
    client.get("/items/other-data")
    client.get("/no/such/path/with-user-data")
    client.get("/echo")
    client.post("/echo", content=b"x" * (LIMIT + 1))
    after = {key: count(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("/items/{item_id}", "GET", "200"): 2, ("other", "GET", "404"): 1, ("/echo", "GET", "405"): 1,
        ("/echo", "POST", "413"): 1}
    assert REGISTRY.get_sample_value("app_request_duration_seconds_count", {"route": "/items/{item_id}"}) == \
        latency + 2
    exposition = "\n".join(f"{s.labels}" for m in REGISTRY.collect() for s in m.samples)
    assert "secret-user-data" not in exposition and "with-user-data" not in exposition


def test_route_template_of_a_scope(app: FastAPI) -> None:
    def scope(path: str, method: str = "GET") -> dict[str, object]:
        return {"type": "http", "path": path, "method": method, "app": app, "root_path": "", "headers": []}

    assert route_template(scope("/items/42")) == "/items/{item_id}"
    assert route_template(scope("/notes", "POST")) == "/notes"
    assert route_template(scope("/notes/../etc")) == "other"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """A JSON handler on the access logger, as `setup_logging(..., "json")` configures it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("app.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def test_access_line_is_json_with_request_id(client: TestClient, json_lines: io.StringIO) -> None:
    client.get("/items/7", headers={"X-Request-ID": "trace-json-1"})
    (line,) = json_lines.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["request_id"] == "trace-json-1"
    assert (entry["level"], entry["logger"], entry["message"].split()[:3]) == \
        ("INFO", "app.access", ["GET", "/items/7", "200"])
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/items/7", 200)
    assert entry["duration_ms"] >= 0 and entry["ts"].endswith("+00:00")


def test_json_format_of_any_line_and_of_exceptions() -> None:
    token = request_id_var.set("req-42")
    try:
        record = logging.LogRecord("app.x", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
        try:
            raise ValueError("boom")
        except ValueError:
            record.exc_info = sys.exc_info()
        RequestIdFilter().filter(record)
        entry = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert {k: entry[k] for k in ("level", "logger", "request_id", "message")} == \
        {"level": "ERROR", "logger": "app.x", "request_id": "req-42", "message": "failed here"}
    assert "method" not in entry and "ValueError: boom" in entry["exc_info"]


def test_setup_logging_switches_format_without_adding_handlers() -> None:
    app_logger, uvicorn_logger = logging.getLogger("app"), logging.getLogger("uvicorn")
    saved = uvicorn_logger.handlers, uvicorn_logger.level, uvicorn_logger.propagate
    try:
        setup_logging("INFO", "json")
        setup_logging("INFO", "json")
        (handler,) = [h for h in app_logger.handlers if isinstance(h, ServiceHandler)]
        assert isinstance(handler.formatter, JsonFormatter)
        (uvicorn_handler,) = uvicorn_logger.handlers
        assert isinstance(uvicorn_handler, ServiceHandler) and isinstance(uvicorn_handler.formatter, JsonFormatter)
    finally:
        setup_logging("INFO", "text")
        uvicorn_logger.handlers, uvicorn_logger.level, uvicorn_logger.propagate = saved
    (handler,) = [h for h in app_logger.handlers if isinstance(h, ServiceHandler)]
    assert not isinstance(handler.formatter, JsonFormatter)
