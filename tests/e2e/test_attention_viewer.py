"""Headless Chromium (network blocked) opens /attention on a real server; the page fetches and draws."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.e2e.conftest import CHROMIUM, chromium
from tests.lm_helpers import linked_models_dir

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")]

TEXT = "the movie was very good ."  # 8 tokens with [CLS] and [SEP]


def test_viewer_draws_lines_matrix_and_prediction(tiny_artifact: Path, tmp_path: Path,
                                                  start_server: Callable[..., AbstractContextManager[Any]]
                                                  ) -> None:
    with start_server(tiny_artifact.parent) as server:
        expected = httpx.post(f"{server.url}/v1/attention", json={"text": TEXT}).json()["prediction"]
        page = f"{server.url}/attention?" + urlencode({"text": TEXT, "model": "tiny-sentiment", "layer": 1,
                                                        "head": 2})
        lines = chromium(tmp_path / "profile", "--dump-dom", page)
        assert 'data-drawn="lines"' in lines
        assert len(re.findall(r"<line ", lines)) == 8 * 8
        assert f'<span class="label">{expected["label"]}</span>' in lines
        assert "layer 1, head 2" in lines and "onnx backend" in lines
        matrix = chromium(tmp_path / "profile", "--dump-dom", f"{page}&view=matrix&aggregate=rollout")
        assert 'data-drawn="matrix"' in matrix
        assert len(re.findall(r'<rect class="cell"', matrix)) == 8 * 8
        assert "rollout through layers 0, 1" in matrix
        shot = tmp_path / "attention_viewer.png"
        chromium(tmp_path / "profile", "--window-size=1200,900", f"--screenshot={shot}", page)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000
        print(f"viewer screenshot: {shot}")


def test_viewer_lists_generators_and_draws_the_next_token(tiny_artifact: Path, tiny_lm_artifact: Path,
                                                         tmp_path: Path,
                                                         start_server: Callable[..., AbstractContextManager[Any]]
                                                         ) -> None:
    models = linked_models_dir(tmp_path / "models", tiny_artifact, tiny_lm_artifact)
    text = "The sea was calm"
    with start_server(models) as server:
        body = httpx.post(f"{server.url}/v1/attention", json={"text": text, "model": "tiny-gpt2"}).json()
        count, best = len(body["tokens"]), body["prediction"]["top_k"][0]
        page = f"{server.url}/attention?" + urlencode({"text": text, "model": "tiny-gpt2", "layer": 1, "head": 1})
        dom = chromium(tmp_path / "profile", "--dump-dom", page)
        assert '<option value="tiny-gpt2">tiny-gpt2 (text-generation)</option>' in dom
        assert '<option value="tiny-sentiment">tiny-sentiment (text-classification)</option>' in dom
        assert 'data-drawn="lines"' in dom and len(re.findall(r"<line ", dom)) == count * count
        assert 'data-type="next_token"' in dom and "Next token: " in dom
        quoted = html.escape(json.dumps(best["text"], ensure_ascii=False), quote=False)
        assert f'<span class="label">{quoted}</span> ({best["probability"]:.3f})' in dom
        assert "tiny-gpt2: layer 1, head 1" in dom
        shot = tmp_path / "attention_viewer_generator.png"
        chromium(tmp_path / "profile", "--window-size=1200,900", f"--screenshot={shot}", f"{page}&view=matrix")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000
        print(f"viewer screenshot: {shot}")
