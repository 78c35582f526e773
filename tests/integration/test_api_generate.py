"""POST /v1/generate and /v1/completions through ASGI on both backends: JSON, SSE framing, seeds, every 422."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import serve
from tests.lm_helpers import CONTEXT

PROMPT = "The sea was calm and"


@pytest.fixture(scope="module", params=["onnx", "torch"])
def client(request: pytest.FixtureRequest, tiny_lm_artifact: Path) -> Iterator[TestClient]:
    with serve(tiny_lm_artifact.parent, runtime=request.param, max_new_tokens=20) as c:
        yield c


def generate(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/generate", json={"prompt": PROMPT, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def events(response: Any) -> list[dict[str, Any]]:
    """Parse an SSE body strictly: every event is one `data: <json>` line followed by a blank line."""
    assert response.headers["content-type"].startswith("text/event-stream")
    body = response.text
    assert body.endswith("\n\n")
    out = []
    for block in body.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, repr(block)
        out.append(block[len("data: "):])
    return [json.loads(item) if item != "[DONE]" else {"done": True} for item in out]


def test_json_answer_and_models_listing(client: TestClient) -> None:
    result = generate(client, max_new_tokens=6, temperature=0)
    assert result["model"] == "tiny-gpt2"
    assert result["finish_reason"] in ("length", "stop")
    assert result["usage"]["prompt_tokens"] > 0 and 1 <= result["usage"]["completion_tokens"] <= 6
    models = client.get("/v1/models").json()["models"]
    assert [(m["name"], m["task"], m["status"], m["max_length"]) for m in models] == [
        ("tiny-gpt2", "text-generation", "ready", CONTEXT)]


def test_same_seed_same_text(client: TestClient) -> None:
    body = {"max_new_tokens": 12, "temperature": 1.0, "top_k": 50, "top_p": 0.95, "repetition_penalty": 1.1}
    first, again = generate(client, seed=5, **body), generate(client, seed=5, **body)
    assert first["text"] == again["text"] and first["usage"] == again["usage"]
    others = {generate(client, seed=seed, **body)["text"] for seed in range(6, 10)}
    assert len(others | {first["text"]}) > 1


def test_sse_framing_matches_the_json_answer(client: TestClient) -> None:
    body = {"prompt": PROMPT, "max_new_tokens": 8, "temperature": 0.8, "seed": 3}
    response = client.post("/v1/generate", json={**body, "stream": True})
    assert response.status_code == 200
    stream = events(response)
    assert all(set(e) == {"text"} for e in stream[:-1]) and len(stream) >= 2
    final = stream[-1]
    assert final["finish_reason"] in ("length", "stop") and final["model"] == "tiny-gpt2"
    plain = generate(client, **{k: v for k, v in body.items() if k != "prompt"})
    assert "".join(e["text"] for e in stream) == plain["text"]
    assert final["usage"] == plain["usage"]


def test_stop_string_cuts_the_text(client: TestClient) -> None:
    full = generate(client, max_new_tokens=12, temperature=0)["text"]
    stop = full[3:5]
    cut = generate(client, max_new_tokens=12, temperature=0, stop=[stop])
    assert cut["finish_reason"] == "stop" and cut["text"] == full[: full.index(stop)]


def test_openai_completion_shapes(client: TestClient) -> None:
    response = client.post("/v1/completions", json={"model": "tiny-gpt2", "prompt": PROMPT, "max_tokens": 5,
                                                    "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"][0]["text"] == generate(client, max_new_tokens=5, temperature=0)["text"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    streamed = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 5, "temperature": 0,
                                                    "stream": True})
    chunks = events(streamed)
    assert chunks[-1] == {"done": True}
    assert chunks[-2]["choices"][0]["finish_reason"] in ("length", "stop") and chunks[-2]["usage"]
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == body["choices"][0]["text"]


@pytest.mark.parametrize(("body", "field"), [
    ({"prompt": ""}, "prompt"), ({"prompt": "  \n"}, "prompt"), ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": 21}, "max_new_tokens"), ({"prompt": "the sea " * CONTEXT}, "prompt"),
    ({"temperature": -0.1}, "temperature"), ({"temperature": 6}, "temperature"), ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"), ({"top_k": -1}, "top_k"), ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"stop": [""]}, "stop"), ({"unknown": 1}, "unknown"),
])
def test_invalid_requests_are_422(client: TestClient, body: dict[str, Any], field: str) -> None:
    response = client.post("/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 4, **body})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "invalid_input"
    assert any(field in [str(p) for p in d["loc"]] for d in error["detail"]), error


@pytest.mark.parametrize("body", [{"max_tokens": 0}, {"max_tokens": 21}, {"n": 2}, {"prompt": ""},
                                  {"temperature": 3}])
def test_invalid_completions_are_422(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/v1/completions", json={"prompt": PROMPT, **body})
    assert response.status_code == 422, response.text


def test_wrong_task_and_unknown_model(client: TestClient) -> None:
    assert client.post("/v1/sentiment", json={"text": "fine", "model": "tiny-gpt2"}).status_code == 422
    assert client.post("/v1/generate", json={"prompt": PROMPT, "model": "nope", "max_new_tokens": 4}).status_code == 404
