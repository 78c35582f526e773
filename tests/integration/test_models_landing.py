"""Models that land while the service runs (APP_MODELS_POLL_SECONDS, APP_EXPECTED_MODELS), as `make run` serves the
teacher while the other models build: an expected model is listed as `building` until its artifact is published, then
it is loaded, warmed and served beside the models already serving, which keep answering and are not reloaded; staging
folders and folders without a manifest are never picked up."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.registry import Registry
from app.tasks.base import Model
from contract import Artifact, publish, staging_dir
from tests.integration.conftest import serve

NAME, LM = "tiny-sentiment", "tiny-gpt2"
POLL = 0.1


@pytest.fixture
def models_dir(tiny_artifact: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny_artifact, tmp_path / "models" / NAME)
    return tmp_path / "models"


def stage_copy(source: Path, models_dir: Path, name: str) -> Path:
    """A copy of the artifact at ``source`` named ``name``, complete in a staging folder of ``models_dir``."""
    stage = staging_dir(models_dir, name)
    shutil.copytree(source, stage, dirs_exist_ok=True)
    manifest = json.loads((stage / "manifest.json").read_text())
    (stage / "manifest.json").write_text(json.dumps({**manifest, "name": name}, indent=2))
    return stage


def publish_copy(source: Path, models_dir: Path, name: str) -> Path:
    """As a training verb publishes: the whole artifact in a staging folder, then renamed into place."""
    return publish(stage_copy(source, models_dir, name), models_dir / name)


def listed(client: TestClient) -> dict[str, dict[str, Any]]:
    """/v1/models by name; OpenAI's `data` and our `models` list the same models."""
    body = client.get("/v1/models").json()
    assert body["object"] == "list" and body["data"] == body["models"]
    return {model["id"]: model for model in body["models"]}


def wait_until_ready(client: TestClient, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (model := listed(client).get(name)) is None or model["status"] != "ready":
        assert model is None or model["status"] in ("building", "ready"), model
        assert time.monotonic() < deadline, f"{name} was not picked up: {listed(client)}"
        time.sleep(POLL / 2)
    return model


def registry_of(client: TestClient) -> Registry:
    registry: Registry = client.app.state.service.registry  # type: ignore[attr-defined]
    return registry


def test_an_expected_model_is_building_until_it_lands_then_serves(
        models_dir: Path, tiny_lm_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the landing model loads (held back here), the serving one answers and /health/ready stays 200."""
    loading, release = threading.Event(), threading.Event()
    load = Registry._load

    def held_back(self: Registry, artifact: Artifact) -> Model:
        if artifact.path.name == LM:
            loading.set()
            release.wait(30)
        return load(self, artifact)

    monkeypatch.setattr(Registry, "_load", held_back)
    with serve(models_dir, expected_models=f"{NAME}, {LM}", models_poll_seconds=POLL) as client:
        models = listed(client)
        assert models[NAME]["status"] == "ready"
        assert {k: models[LM][k] for k in ("object", "status", "task", "error")} == {
            "object": "model", "status": "building", "task": None, "error": None}
        assert client.get(f"/v1/models/{LM}").json()["status"] == "building"
        ready = client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["models"] == {NAME: "ready", LM: "building"}
        early = client.post("/v1/generate", json={"prompt": "the sea", "model": LM, "max_new_tokens": 2})
        assert early.status_code == 503 and early.json()["code"] == "not_ready"
        assert "building" in early.json()["error"]
        _, serving = registry_of(client).get(NAME, "text-classification")

        publish_copy(tiny_lm_artifact, models_dir, LM)
        assert loading.wait(30), "the published model was not picked up"
        answers: list[int] = []
        asking = threading.Thread(target=lambda: answers.append(
            client.post("/v1/sentiment", json={"text": "a good film", "model": NAME}).status_code))
        asking.start()
        asking.join(15)
        assert answers == [200], "a request to the serving model waited for the landing one"
        assert listed(client)[LM]["status"] == "building"
        assert client.get("/health/ready").status_code == 200
        release.set()

        landed = wait_until_ready(client, LM)
        assert landed["task"] == "text-generation" and landed["manifest_sha256"]
        generated = client.post("/v1/generate", json={"prompt": "the sea", "model": LM, "max_new_tokens": 2})
        assert generated.status_code == 200 and generated.json()["model"] == LM
        assert client.post("/v1/sentiment", json={"text": "a good film", "model": NAME}).status_code == 200
        assert registry_of(client).get(NAME, "text-classification")[1] is serving  # not reloaded
        assert client.get("/health/ready").json()["models"] == {NAME: "ready", LM: "ready"}
        assert registry_of(client).arrived() == []


def test_staging_folders_and_folders_without_manifest_are_never_picked_up(
        models_dir: Path, tiny_artifact: Path) -> None:
    with serve(models_dir, models_poll_seconds=POLL) as client:
        stage = stage_copy(tiny_artifact, models_dir, "staged")  # complete, not yet renamed into place
        unfinished = stage_copy(tiny_artifact, models_dir, "unfinished").rename(models_dir / "unfinished")
        (unfinished / "manifest.json").unlink()
        # The folders above sort before "z-landed": the look that finds it has passed them over.
        publish_copy(tiny_artifact, models_dir, "z-landed")
        wait_until_ready(client, "z-landed")
        assert sorted(listed(client)) == [NAME, "z-landed"]
        assert registry_of(client).arrived() == []

        publish(stage, models_dir / "staged")
        assert wait_until_ready(client, "staged")["task"] == "text-classification"
        assert client.post("/v1/sentiment", json={"text": "fine", "model": "staged"}).status_code == 200


def test_a_model_that_lands_broken_is_listed_as_failed_and_not_retried(
        models_dir: Path, tiny_artifact: Path) -> None:
    with serve(models_dir, expected_models="broken", models_poll_seconds=POLL) as client:
        stage = stage_copy(tiny_artifact, models_dir, "broken")
        corrupted = stage / next(iter(json.loads((stage / "manifest.json").read_text())["files"]))
        data = bytearray(corrupted.read_bytes())
        data[0] ^= 0xFF
        corrupted.write_bytes(bytes(data))
        publish(stage, models_dir / "broken")
        deadline = time.monotonic() + 30
        while (model := listed(client)["broken"])["status"] == "building":
            assert time.monotonic() < deadline, "the broken model was not picked up"
            time.sleep(POLL / 2)
        assert model["status"] == "failed" and "checksum mismatch" in model["error"]
        assert registry_of(client).arrived() == []
        assert client.get("/health/ready").status_code == 200
        assert listed(client)[NAME]["status"] == "ready"
