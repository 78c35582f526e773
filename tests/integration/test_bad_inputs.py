"""The bad-input table of README.md: every case gets its documented 4xx in the error JSON shape
``{error, code, request_id}`` (the request id also in ``X-Request-ID``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import serve

KEY = {"Authorization": "Bearer user-key"}
JSON = {**KEY, "Content-Type": "application/json"}

# name, method, path, request keyword arguments, status, code
CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("empty text", "POST", "/v1/sentiment", {"json": {"text": "  "}, "headers": KEY}, 422, "invalid_input"),
    ("empty list", "POST", "/v1/sentiment", {"json": {"texts": []}, "headers": KEY}, 422, "invalid_input"),
    ("2 MB body", "POST", "/v1/sentiment",
     {"content": json.dumps({"text": "a" * 2_000_000}), "headers": JSON}, 413, "payload_too_large"),
    ("invalid UTF-8", "POST", "/v1/sentiment",
     {"content": b'{"text": "\xff\xfe"}', "headers": JSON}, 400, "bad_request"),
    ("malformed JSON", "POST", "/v1/sentiment", {"content": b'{"text": ', "headers": JSON}, 422, "invalid_input"),
    ("not JSON", "POST", "/v1/sentiment",
     {"content": b"text=hi", "headers": {**KEY, "Content-Type": "text/plain"}}, 422, "invalid_input"),
    ("wrong types", "POST", "/v1/sentiment", {"json": {"texts": "one text"}, "headers": KEY}, 422, "invalid_input"),
    ("wrong types (generate)", "POST", "/v1/generate",
     {"json": {"prompt": ["x"], "max_new_tokens": "many"}, "headers": KEY}, 422, "invalid_input"),
    ("10,000-item batch", "POST", "/v1/sentiment",
     {"json": {"texts": ["good"] * 10_000}, "headers": KEY}, 422, "invalid_input"),
    ("negative max_new_tokens", "POST", "/v1/generate",
     {"json": {"prompt": "Call me", "max_new_tokens": -5}, "headers": KEY}, 422, "invalid_input"),
    ("huge max_new_tokens", "POST", "/v1/generate",
     {"json": {"prompt": "Call me", "max_new_tokens": 10**12}, "headers": KEY}, 422, "invalid_input"),
    ("huge max_tokens (OpenAI)", "POST", "/v1/completions",
     {"json": {"prompt": "Call me", "max_tokens": 10**12}, "headers": KEY}, 422, "invalid_input"),
    ("unknown model", "POST", "/v1/sentiment",
     {"json": {"text": "fine", "model": "nope"}, "headers": KEY}, 404, "model_not_found"),
    ("missing API key", "POST", "/v1/sentiment", {"json": {"text": "fine"}}, 401, "unauthorized"),
    ("invalid API key", "POST", "/v1/sentiment",
     {"json": {"text": "fine"}, "headers": {"X-API-Key": "wrong"}}, 401, "unauthorized"),
    ("user key on an admin endpoint", "POST", "/admin/models/reload", {"headers": KEY}, 403, "forbidden"),
    ("unknown path", "GET", "/v1/nothing", {"headers": KEY}, 404, "not_found"),
    ("wrong method", "GET", "/v1/sentiment", {"headers": KEY}, 405, "method_not_allowed"),
]


@pytest.fixture(scope="module")
def client(tiny_artifact: Path, tiny_lm_artifact: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    models = tmp_path_factory.mktemp("bad-input-models")
    for artifact in (tiny_artifact, tiny_lm_artifact):
        (models / artifact.name).symlink_to(artifact, target_is_directory=True)
    with serve(models, api_keys="user-key", admin_api_key="admin-key") as c:
        yield c


@pytest.mark.parametrize(("name", "method", "path", "kwargs", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_documented_status(client: TestClient, name: str, method: str, path: str,
                                              kwargs: dict[str, Any], status: int, code: str) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert {"error", "code", "request_id"} <= set(body)
    assert body["code"] == code and body["error"]
    assert response.headers["X-Request-ID"] == body["request_id"]
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_service_still_answers_after_the_table(client: TestClient) -> None:
    response = client.post("/v1/sentiment", json={"text": "a good film"}, headers=KEY)
    assert response.status_code == 200, response.text
