"""The app through ASGI with a tiny artifact: API keys (401/403/200), open health, closed docs and metrics,
CORS, the body limit and the Prometheus exposition."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from app.api.security import require_admin
from tests.integration.conftest import serve

USER, ADMIN = {"Authorization": "Bearer user-key"}, {"X-API-Key": "admin-key"}
ORIGIN = "http://viewer.example"
TEXT = {"text": "the movie was very good ."}


def add_admin_probe(client: TestClient) -> None:
    """An admin endpoint to test the admin dependency with (the real ones come with hot reload)."""

    async def probe() -> dict[str, bool]:
        return {"admin": True}

    client.app.add_api_route("/probe/admin", probe, dependencies=[Depends(require_admin)])  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def locked(tiny_artifact: Path) -> Iterator[TestClient]:
    """Keys on, docs and metrics closed, one CORS origin."""
    with serve(tiny_artifact.parent, api_keys="user-key,other-key", admin_api_key="admin-key", docs_public=False,
               metrics_public=False, cors_origins=[ORIGIN]) as client:
        add_admin_probe(client)
        yield client


@pytest.fixture(scope="module")
def open_app(tiny_artifact: Path) -> Iterator[TestClient]:
    """The defaults: no keys, docs and metrics open, no CORS."""
    with serve(tiny_artifact.parent) as client:
        add_admin_probe(client)
        yield client


@pytest.mark.parametrize(("method", "path", "headers", "status"), [
    ("POST", "/v1/sentiment", {}, 401),
    ("POST", "/v1/sentiment", {"Authorization": "Bearer wrong"}, 401),
    ("POST", "/v1/sentiment", {"X-API-Key": "wrong"}, 401),
    ("POST", "/v1/sentiment", USER, 200),
    ("POST", "/v1/sentiment", {"X-API-Key": "other-key"}, 200),
    ("POST", "/v1/sentiment", ADMIN, 200),
    ("GET", "/v1/models", {}, 401),
    ("GET", "/v1/models", USER, 200),
    ("POST", "/v1/attention", {}, 401),
    ("POST", "/v1/generate", {}, 401),
    ("POST", "/v1/completions", {}, 401),
    ("GET", "/probe/admin", {}, 401),
    ("GET", "/probe/admin", USER, 403),
    ("GET", "/probe/admin", ADMIN, 200),
    ("GET", "/health/live", {}, 200),
    ("GET", "/health/ready", {}, 200),
    ("GET", "/attention", {}, 200),
])
def test_key_matrix(locked: TestClient, method: str, path: str, headers: dict[str, str], status: int) -> None:
    response = locked.request(method, path, headers={**headers, "X-Request-ID": "sec-1"},
                              json=TEXT if method == "POST" else None)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json() | {"error": ""} == {"error": "", "code": "unauthorized", "request_id": "sec-1"}
    if status == 403:
        assert response.json()["code"] == "forbidden"


def test_v2_probes_are_keyless_and_v2_models_need_a_key(locked: TestClient) -> None:
    assert locked.get("/v2/health/live").json() == {"live": True}
    assert locked.get("/v2/health/ready").status_code == 200
    refused = locked.get("/v2/models/tiny-sentiment")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert "error" in refused.json() and "code" not in refused.json()  # the protocol's own envelope
    assert locked.get("/v2/models/tiny-sentiment", headers=USER).status_code == 200
    assert locked.get("/v2", headers=USER).status_code == 200 and locked.get("/v2").status_code == 401


def test_without_keys_v1_is_open_and_admin_closed(open_app: TestClient) -> None:
    assert open_app.post("/v1/sentiment", json=TEXT).status_code == 200
    closed = open_app.get("/probe/admin", headers=ADMIN)
    assert closed.status_code == 403 and "no admin key" in closed.json()["error"]


def test_docs_closed_by_configuration(locked: TestClient, open_app: TestClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        refused = locked.get(path)
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
        assert locked.get(path, headers=USER).status_code == 200
        assert open_app.get(path).status_code == 200
    assert locked.get("/static-offline-docs/swagger-ui.css").status_code == 200


def test_openapi_shows_the_key_schemes(open_app: TestClient) -> None:
    spec = open_app.get("/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    sentiment = spec["paths"]["/v1/sentiment"]["post"]
    assert sentiment["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]
    assert "401" in sentiment["responses"]
    assert "security" not in spec["paths"]["/health/ready"]["get"]


def test_cors_preflight_for_a_configured_origin(locked: TestClient) -> None:
    preflight = locked.options("/v1/sentiment", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    answer = locked.post("/v1/sentiment", json=TEXT, headers={**USER, "Origin": ORIGIN})
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    other = locked.options("/v1/sentiment", headers={"Origin": "http://evil.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_headers_by_default(open_app: TestClient) -> None:
    answer = open_app.post("/v1/sentiment", json=TEXT, headers={"Origin": ORIGIN})
    assert answer.status_code == 200
    preflight = open_app.options("/v1/sentiment", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert not [h for h in (*answer.headers, *preflight.headers) if h.lower().startswith("access-control-")]


def test_two_megabyte_body_is_413(open_app: TestClient) -> None:
    body = b'{"text": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    response = open_app.post("/v1/sentiment", content=body, headers={"content-type": "application/json",
                                                                      "X-Request-ID": "big-2"})
    assert response.status_code == 413
    assert response.json() | {"error": ""} == {"error": "", "code": "payload_too_large", "limit": 1048576,
                                               "request_id": "big-2"}


def test_metrics_exposition(open_app: TestClient, locked: TestClient) -> None:
    assert open_app.post("/v1/sentiment", json=TEXT).status_code == 200
    response = open_app.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    counted = re.search(r'app_requests_total\{method="POST",route="/v1/sentiment",status="200"\} (\d+)', text)
    assert counted is not None and float(counted.group(1)) >= 1
    assert 'app_request_duration_seconds_bucket{le="0.005",route="/v1/sentiment"}' in text
    assert 'app_model_status{model="tiny-sentiment",status="ready"} 1.0' in text
    assert 'app_model_status{model="tiny-sentiment",status="warming"} 0.0' in text
    for name, kind in (("app_queue_depth", "gauge"), ("app_batch_size", "histogram"),
                       ("app_generated_tokens_total", "counter")):
        assert f"# TYPE {name} {kind}" in text
    assert locked.get("/metrics").status_code == 401
    assert locked.get("/metrics", headers=USER).status_code == 200
