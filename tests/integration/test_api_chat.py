"""POST /v1/chat/completions on both runtimes: the model's chat template, OpenAI's response and chunk shapes,
n choices seeded seed + i, stop strings, usage equal to the tokenizer's count, OpenAI's error envelope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from transformers import AutoTokenizer

from tests.integration.conftest import serve
from tests.lm_helpers import linked_models_dir

MESSAGES = [{"role": "system", "content": "You are a sailor."},
            {"role": "user", "content": [{"type": "text", "text": "The sea "}, {"type": "text", "text": "was"}]}]


@pytest.fixture(scope="module", params=["onnx", "torch"])
def client(request: pytest.FixtureRequest, tiny_chat_artifact: Path, tiny_lm_artifact: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    models = linked_models_dir(tmp_path_factory.mktemp("chat-api"), tiny_chat_artifact, tiny_lm_artifact)
    with serve(models, runtime=request.param, max_new_tokens=40) as c:
        yield c


def chat(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/chat/completions", json={"model": "tiny-chat", "messages": MESSAGES, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def events(client: TestClient, **body: Any) -> list[Any]:
    with client.stream("POST", "/v1/chat/completions",
                       json={"model": "tiny-chat", "messages": MESSAGES, "stream": True, **body}) as response:
        assert response.status_code == 200
        lines = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_plain_completion_uses_the_chat_template(client: TestClient, tiny_chat_artifact: Path) -> None:
    body = chat(client, max_tokens=8, temperature=0)
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "tiny-chat"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length") and choice["logprobs"] is None
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_artifact / "hf")
    flat = [{"role": "system", "content": "You are a sailor."}, {"role": "user", "content": "The sea was"}]
    prompt_ids = tokenizer.apply_chat_template(flat, add_generation_prompt=True, tokenize=True)
    prompt_ids = prompt_ids["input_ids"] if hasattr(prompt_ids, "keys") else prompt_ids
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(prompt_ids)
    assert 1 <= usage["completion_tokens"] <= 8 and usage["total_tokens"] == usage["prompt_tokens"] + usage[
        "completion_tokens"]
    assert len(tokenizer(choice["message"]["content"])["input_ids"]) <= usage["completion_tokens"]


def test_n_choices_are_seeded_seed_plus_index(client: TestClient) -> None:
    both = chat(client, n=2, seed=11, max_completion_tokens=10, temperature=1.0)
    texts = [c["message"]["content"] for c in both["choices"]]
    assert [c["index"] for c in both["choices"]] == [0, 1]
    assert texts[0] == chat(client, seed=11, max_tokens=10)["choices"][0]["message"]["content"]
    assert texts[1] == chat(client, seed=12, max_tokens=10)["choices"][0]["message"]["content"]
    again = chat(client, n=2, seed=11, max_completion_tokens=10)
    assert [c["message"]["content"] for c in again["choices"]] == texts
    assert both["usage"]["completion_tokens"] == sum(
        chat(client, seed=s, max_tokens=10)["usage"]["completion_tokens"] for s in (11, 12))


def test_stop_ends_the_text_before_the_stop_string(client: TestClient) -> None:
    free = chat(client, max_tokens=30, temperature=0)["choices"][0]["message"]["content"]
    assert len(free) >= 4, free
    stop = free[len(free) // 2:len(free) // 2 + 2]
    stopped = chat(client, max_tokens=30, temperature=0, stop=[stop])["choices"][0]
    assert stopped["finish_reason"] == "stop"
    assert stopped["message"]["content"] == free[:free.index(stop)]


def test_stream_chunks_follow_openai(client: TestClient) -> None:
    whole = chat(client, max_tokens=12, temperature=0)
    chunks = events(client, max_tokens=12, temperature=0, stream_options={"include_usage": True})
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == whole["choices"][0]["message"]["content"]
    finishing = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finishing) == 1 and finishing[0]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert all(c["usage"] is None for c in chunks[:-1])
    two = events(client, max_tokens=6, n=2, seed=3)
    assert {c["choices"][0]["index"] for c in two if c["choices"] and c["choices"][0]["finish_reason"]} == {0, 1}
    assert all("usage" not in c for c in two)


def test_errors_in_openai_envelope(client: TestClient) -> None:
    no_template = client.post("/v1/chat/completions", json={"model": "tiny-gpt2", "messages": MESSAGES})
    assert no_template.status_code == 422
    error = no_template.json()["error"]
    assert "has no chat template" in error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == "model" and error["code"] == "invalid_input"
    unknown = client.post("/v1/chat/completions", json={"model": "nope", "messages": MESSAGES})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    bad = client.post("/v1/chat/completions", json={"messages": [{"role": "robot", "content": "x"}]})
    assert bad.status_code == 422 and bad.json()["error"]["param"].startswith("messages")
    too_many = client.post("/v1/chat/completions", json={"model": "tiny-chat", "messages": MESSAGES,
                                                         "max_tokens": 41})
    assert too_many.status_code == 422 and too_many.json()["error"]["param"] == "max_tokens"
    plain = client.post("/v1/completions", json={"model": "nope", "prompt": "x"})
    assert plain.status_code == 404 and plain.json()["code"] == "model_not_found"  # other routes keep theirs


def test_models_list_reads_as_openai(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == [m["name"] for m in body["models"]]
    chat_model = next(m for m in body["data"] if m["id"] == "tiny-chat")
    assert chat_model["object"] == "model" and chat_model["created"] > 1_600_000_000
    assert client.get("/v1/models/tiny-chat").json()["id"] == "tiny-chat"
    assert client.get("/v1/models/nope").status_code == 404
