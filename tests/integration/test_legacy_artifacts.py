"""Artifacts published before this schema still serve: a schema-1.3 classifier (``task: "sentiment"``, as every
classifier was written before text-classification got its name) loads, classifies, shows attention, and is listed
under the task's current name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.integration.conftest import serve


def test_a_schema_1_3_sentiment_artifact_serves(tiny_artifact: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_artifact, tmp_path / "models" / "old-sentiment"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(name="old-sentiment", task="sentiment", schema_version="1.3")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    with serve(folder.parent) as client:
        (listed,) = client.get("/v1/models").json()["models"]
        assert (listed["status"], listed["task"], listed["schema_version"]) == ("ready", "text-classification", "1.3")
        result = client.post("/v1/sentiment", json={"text": "the movie was very good ."}).json()
        assert result["model"] == "old-sentiment" and result["results"][0]["label"] in ("negative", "positive")
        attention = client.post("/v1/attention", json={"text": "good film", "model": "old-sentiment"})
        assert attention.status_code == 200 and attention.json()["prediction"]["type"] == "classification"
