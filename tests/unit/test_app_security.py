"""API keys: settings parsing, the key check (bearer, X-API-Key, files, admin vs user), constant-time compare."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from app.api import security
from app.api.errors import headers_of, install_error_handlers
from app.api.security import KeyRing, authorize, require_admin, require_api_key
from app.errors import Forbidden, Unauthorized
from app.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("APP_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def ring(**settings: object) -> KeyRing:
    return KeyRing.from_settings(Settings(_env_file=None, **settings))  # type: ignore[arg-type]


def test_keys_from_environment_and_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "keys.txt").write_text("# team keys\nfile-key-1\n\n  file-key-2  \n")
    monkeypatch.setenv("APP_API_KEYS", "env-key-1, env-key-2,")
    monkeypatch.setenv("APP_API_KEYS_FILE", str(tmp_path / "keys.txt"))
    monkeypatch.setenv("APP_ADMIN_API_KEY", "root-key")
    settings = load_settings()
    assert settings.user_keys() == ("env-key-1", "env-key-2", "file-key-1", "file-key-2")
    assert settings.admin_keys() == ("root-key",)
    assert "env-key-1" not in repr(settings)  # secrets stay out of logs and tracebacks
    keys = KeyRing.from_settings(settings)
    assert [keys.role(k) for k in ("file-key-2", "env-key-1", "root-key", "nope", None)] == \
        ["user", "user", "admin", None, None]


@pytest.mark.parametrize("content", [None, "", "# only a comment\n\n"])
def test_key_file_without_keys_stops_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           content: str | None) -> None:
    path = tmp_path / "keys.txt"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("APP_ADMIN_API_KEYS_FILE", str(path))
    with pytest.raises(SettingsError, match="APP_ADMIN_API_KEYS_FILE="):
        load_settings()


def test_defaults_are_open_and_cors_origins_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings(_env_file=None)
    assert (defaults.user_keys(), defaults.admin_keys(), defaults.cors_origins) == ((), (), [])
    assert (defaults.docs_public, defaults.metrics_public, defaults.max_body_bytes, defaults.log_format) == \
        (True, True, 1024 * 1024, "text")
    monkeypatch.setenv("APP_CORS_ORIGINS", "https://a.example, http://localhost:3000")
    assert load_settings().cors_origins == ["https://a.example", "http://localhost:3000"]
    monkeypatch.setenv("APP_CORS_ORIGINS", "https://a.example/")
    with pytest.raises(SettingsError, match="APP_CORS_ORIGINS"):
        load_settings()


def test_authorize_levels() -> None:
    keys = ring(api_keys="u1,u2", admin_api_key="adm")
    for key in ("u1", "u2", "adm"):
        authorize(keys, key, "user")
        authorize(keys, key, "closed")
    authorize(keys, "adm", "admin")
    for key, level in ((None, "user"), ("wrong", "user"), ("", "closed"), (None, "admin"), ("wrong", "admin")):
        with pytest.raises(Unauthorized) as raised:
            authorize(keys, key, level)  # type: ignore[arg-type]
        assert headers_of(raised.value) == {"WWW-Authenticate": "Bearer"}
    with pytest.raises(Forbidden, match="needs the admin key"):
        authorize(keys, "u1", "admin")


def test_without_keys_user_level_is_open_and_the_rest_closed() -> None:
    keys = ring()
    authorize(keys, None, "user")
    authorize(keys, "anything", "user")
    for level in ("admin", "closed"):
        with pytest.raises(Forbidden):
            authorize(keys, "anything", level)  # type: ignore[arg-type]
    with pytest.raises(Forbidden, match="no admin key"):
        authorize(ring(api_keys="u1"), "u1", "admin")


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = ring(api_keys="k1,k2,k3", admin_api_key="a1,a2")
    calls: list[tuple[int, int]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return compare(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    for key in ("k1", "a1", "a-much-longer-wrong-key"):
        calls.clear()
        keys.role(key)
        assert calls == [(32, 32)] * 5  # every key, even after a match; digests, so lengths never differ


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.state.keys = KeyRing.from_settings(Settings(_env_file=None, api_keys="user-key", admin_api_key="admin-key"))

    @app.get("/user", dependencies=[Depends(require_api_key)])
    async def user() -> dict[str, str]:
        return {"ok": "user"}

    @app.get("/admin", dependencies=[Depends(require_admin)])
    async def admin() -> dict[str, str]:
        return {"ok": "admin"}

    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/user", {}, 401),
    ("/user", {"Authorization": "Bearer user-key"}, 200),
    ("/user", {"Authorization": "bearer user-key"}, 200),
    ("/user", {"X-API-Key": "user-key"}, 200),
    ("/user", {"Authorization": "Bearer admin-key"}, 200),
    ("/user", {"Authorization": "Bearer wrong"}, 401),
    ("/user", {"X-API-Key": "wrong"}, 401),
    ("/user", {"Authorization": "Basic dXNlci1rZXk6"}, 401),
    ("/user", {"Authorization": "Basic x", "X-API-Key": "user-key"}, 200),
    ("/admin", {}, 401),
    ("/admin", {"X-API-Key": "user-key"}, 403),
    ("/admin", {"Authorization": "Bearer admin-key"}, 200),
])
def test_dependencies_read_bearer_and_x_api_key(client: TestClient, path: str, headers: dict[str, str],
                                                status: int) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["code"] == "unauthorized"
    if status == 403:
        assert response.json()["code"] == "forbidden"


def test_openapi_declares_both_schemes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"] == {
        "HTTPBearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <API key>`"},
        "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                         "description": "`X-API-Key: <API key>`"}}
    assert spec["paths"]["/user"]["get"]["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]
