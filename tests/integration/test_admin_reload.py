"""Hot reload: POST /admin/models/{name}/reload and /admin/models/reload swap in a verified, warmed new version;
on any failure the old version keeps serving."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.registry import Registry
from tests.integration.conftest import serve

NAME = "tiny-sentiment"
ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture
def models_dir(tiny_artifact: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny_artifact, tmp_path / "models" / NAME)
    return tmp_path / "models"


def edit_manifest(folder: Path, **fields: Any) -> str:
    """Rewrite manifest.json with ``fields`` changed; returns the sha256 of the new file."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(fields)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()


def served(client: TestClient, name: str = NAME) -> dict[str, Any]:
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    model: dict[str, Any] = models[name]
    return model


def test_reload_swaps_in_the_new_version_while_requests_keep_succeeding(models_dir: Path) -> None:
    with serve(models_dir, admin_api_key="admin-secret") as client:
        registry: Registry = client.app.state.service.registry  # type: ignore[attr-defined]
        before = served(client)
        _, old_engine = registry.get(NAME, "text-classification")
        new_sha = edit_manifest(models_dir / NAME, created_at="2030-01-01T00:00:00+00:00")

        statuses: list[int] = []
        done = threading.Event()

        def load() -> None:
            while not done.is_set():
                statuses.append(client.post("/v1/sentiment", json={"text": "a good film"}).status_code)

        worker = threading.Thread(target=load)
        worker.start()
        try:
            response = client.post(f"/admin/models/{NAME}/reload", headers=ADMIN)
        finally:
            done.set()
            worker.join()

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["outcome"] == "reloaded" and body["status"] == "ready"
        assert body["version"] == "2030-01-01T00:00:00+00:00" and body["manifest_sha256"] == new_sha
        assert body["previous"] == {"version": before["version"], "manifest_sha256": before["manifest_sha256"]}
        now = served(client)
        assert (now["version"], now["manifest_sha256"], now["status"]) == (body["version"], new_sha, "ready")
        assert statuses and set(statuses) == {200}
        _, new_engine = registry.get(NAME, "text-classification")
        assert new_engine is not old_engine
        assert old_engine.classify(["an in-flight request"], "chunks")[0].label in ("negative", "positive")


def test_a_refused_version_leaves_the_old_one_serving(models_dir: Path) -> None:
    with serve(models_dir, admin_api_key="admin-secret") as client:
        before = served(client)
        config = models_dir / NAME / "hf" / "config.json"
        config.write_text(config.read_text().replace('"negative"', '"NEGATIVE"'))
        edit_manifest(models_dir / NAME, created_at="2030-01-01T00:00:00+00:00")

        response = client.post(f"/admin/models/{NAME}/reload", headers=ADMIN)
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["code"] == "reload_failed" and body["request_id"] and body["serving"] is True
        assert "checksum mismatch for hf/config.json" in body["reason"]
        now = served(client)
        assert (now["status"], now["version"], now["manifest_sha256"]) == \
            ("ready", before["version"], before["manifest_sha256"])
        assert client.post("/v1/sentiment", json={"text": "still served"}).status_code == 200


def test_names_come_only_from_the_models_dir_and_need_the_admin_key(models_dir: Path) -> None:
    (models_dir.parent / "elsewhere").mkdir()
    with serve(models_dir, admin_api_key="admin-secret", api_keys="user-key") as client:
        for name in ("nope", "%2E%2E", ".hidden", "..%2Felsewhere", ".."):  # the last two match no route
            response = client.post(f"/admin/models/{name}/reload", headers=ADMIN)
            assert response.status_code == 404, (name, response.text)
        assert client.post("/admin/models/%2E%2E/reload", headers=ADMIN).json()["code"] == "model_not_found"
        assert client.post(f"/admin/models/{NAME}/reload").status_code == 401
        assert client.post(f"/admin/models/{NAME}/reload", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/admin/models/reload", headers={"X-API-Key": "user-key"}).status_code == 403
    with serve(models_dir) as client:  # no admin key configured: admin endpoints are closed
        assert client.post(f"/admin/models/{NAME}/reload", headers=ADMIN).status_code == 403


def test_bulk_reload_adds_new_folders_and_skips_unchanged_ones(models_dir: Path) -> None:
    with serve(models_dir, admin_api_key="admin-secret") as client:
        sha = served(client)["manifest_sha256"]
        shutil.copytree(models_dir / NAME, models_dir / "tiny-copy")
        copy_sha = edit_manifest(models_dir / "tiny-copy", name="tiny-copy")
        shutil.copytree(models_dir / NAME, models_dir / "tiny-broken")
        edit_manifest(models_dir / "tiny-broken", name="tiny-broken", schema_version="2.0")

        response = client.post("/admin/models/reload", headers=ADMIN)
        assert response.status_code == 200, response.text
        results = {r["model"]: r for r in response.json()["results"]}
        assert list(results) == ["tiny-broken", "tiny-copy", NAME]
        assert results[NAME]["outcome"] == "unchanged" and results[NAME]["manifest_sha256"] == sha
        assert results["tiny-copy"]["outcome"] == "added" and results["tiny-copy"]["manifest_sha256"] == copy_sha
        assert results["tiny-broken"]["outcome"] == "failed" and results["tiny-broken"]["status"] == "failed"
        assert "unsupported schema_version '2.0'" in results["tiny-broken"]["error"]
        assert served(client, "tiny-copy")["status"] == "ready"
        assert served(client, "tiny-broken")["status"] == "failed"
        metrics = client.get("/metrics").text
        assert 'app_model_status{model="tiny-copy",status="ready"} 1.0' in metrics
        assert 'app_model_status{model="tiny-broken",status="failed"} 1.0' in metrics
        answer = client.post("/v1/sentiment", json={"text": "good", "model": "tiny-copy"})
        assert answer.status_code == 200 and answer.json()["model"] == "tiny-copy"
