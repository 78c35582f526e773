"""Any Unicode in, no 5xx out: every text field of every route, on both runtimes.

A table of hostile inputs (lone surrogates, NUL and other controls, combining marks, bidi overrides, a BOM,
non-characters, emoji) with the status each gets, then property tests over the full code-point range (surrogates
included): never a 5xx, and a 4xx always locates the field. Bodies are sent as raw JSON with ``\\ud800`` escapes
(valid JSON that pydantic accepts as ``str``), as a hostile client would."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import serve
from tests.lm_helpers import linked_models_dir

Body = Callable[[str], tuple[str, dict[str, Any]]]
SENTIMENT, CHAT, EMBED = "tiny-sentiment", "tiny-chat", "tiny-embed"

# (name, request builder, where the error must point): the location as (envelope, path)
FIELDS: list[tuple[str, Body, str]] = [
    ("sentiment.text", lambda x: ("/v1/sentiment", {"text": x}), "body.text"),
    ("sentiment.texts", lambda x: ("/v1/sentiment", {"texts": ["fine", x]}), "body.texts.1"),
    ("attention.text", lambda x: ("/v1/attention", {"text": x, "model": SENTIMENT}), "body.text"),
    ("attention.png", lambda x: ("/v1/attention?format=png", {"text": x, "model": SENTIMENT, "layers": [0],
                                                               "heads": [0]}), "body.text"),
    ("generate.prompt", lambda x: ("/v1/generate", {"prompt": x, "model": CHAT, "max_new_tokens": 2}), "body.prompt"),
    ("generate.stop", lambda x: ("/v1/generate", {"prompt": "The sea", "model": CHAT, "max_new_tokens": 2,
                                                  "stop": [x]}), "body.stop.0"),
    ("completions.prompt", lambda x: ("/v1/completions", {"prompt": x, "model": CHAT, "max_tokens": 2}),
     "body.prompt"),
    ("completions.stop", lambda x: ("/v1/completions", {"prompt": "The sea", "model": CHAT, "max_tokens": 2,
                                                        "stop": x}), "body.stop.0"),
    ("chat.content", lambda x: ("/v1/chat/completions", {"model": CHAT, "max_tokens": 2, "messages": [
        {"role": "user", "content": x}]}), "messages.0.content"),
    ("chat.stop", lambda x: ("/v1/chat/completions", {"model": CHAT, "max_tokens": 2, "stop": [x], "messages": [
        {"role": "user", "content": "Hello"}]}), "stop.0"),
    ("embeddings.input", lambda x: ("/v1/embeddings", {"input": x, "model": EMBED}), "body.input"),
    ("embeddings.inputs", lambda x: ("/v1/embeddings", {"input": ["fine", x], "model": EMBED}), "body.input.1"),
    ("v2.infer.text", lambda x: (f"/v2/models/{SENTIMENT}/infer", {"inputs": [
        {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["fine", x]}]}), "inputs.0.data.1"),
    ("v2.infer.embedding", lambda x: (f"/v2/models/{EMBED}/infer", {"inputs": [
        {"name": "text", "shape": [1], "datatype": "BYTES", "data": [x]}]}), "inputs.0.data.0"),
    ("v2.infer.text_input", lambda x: (f"/v2/models/{CHAT}/infer", {"parameters": {"max_tokens": 2}, "inputs": [
        {"name": "text_input", "shape": [1], "datatype": "BYTES", "data": [x]}]}), "text_input"),
    ("v2.generate", lambda x: (f"/v2/models/{CHAT}/generate", {"text_input": x, "parameters": {"max_tokens": 2}}),
     "text_input"),
]
IDS = [name for name, _, _ in FIELDS]


@pytest.fixture(scope="module", params=["onnx", "torch"])
def client(request: pytest.FixtureRequest, tiny_artifact: Path, tiny_chat_artifact: Path,
           tiny_embedding_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    models = linked_models_dir(tmp_path_factory.mktemp("hostile"), tiny_artifact, tiny_chat_artifact,
                               tiny_embedding_artifact)
    with serve(models, runtime=request.param, max_text_chars=300) as c:
        yield c


def post(client: TestClient, build: Body, text: str) -> Any:
    path, body = build(text)
    return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def path_of(build: Body) -> str:
    return build("x")[0]


def locations(response: Any) -> list[str]:
    """Where a 4xx says the problem is: the detail locs (our envelope), `param` (OpenAI's) or the message of the
    Open Inference Protocol's ``{"error": "..."}`` (which names the input)."""
    body = response.json()
    if isinstance(body.get("error"), dict):
        return [str(body["error"]["param"])]
    if list(body) == ["error"]:
        return [body["error"]]
    return [".".join(str(part) for part in item["loc"]) for item in body.get("detail", [])]


HOSTILE = {  # input -> status expected on every field (200: accepted as it is)
    "good \ud800 film": 422,  # lone high surrogate
    "\udfff": 422,  # lone low surrogate
    "a \ud83d\ude00 smile": 200,  # a valid surrogate pair in JSON: one emoji
    "nul \x00 inside": 200,  # NUL: the tokenizers read it (WordPiece drops it, byte BPE keeps the byte)
    "bell \x07 and escape \x1b[31m": 200,
    "e\u0301 and \u00e9": 200,  # combining mark vs precomposed: not renormalised
    "\u202eright-to-left override": 200,
    "\ufeffbom first": 200,
    "non-character \uffff \U0010ffff": 200,
}


@pytest.mark.parametrize(("name", "build", "where"), FIELDS, ids=IDS)
def test_hostile_inputs_table(client: TestClient, name: str, build: Body, where: str) -> None:
    for text, expected in HOSTILE.items():
        response = post(client, build, text)
        if expected == 422 and path_of(build).startswith("/v2/"):
            expected = 400  # the protocol's status for invalid input
        assert response.status_code == expected, (name, text, response.text)
        if expected == 422:
            assert any(where in loc for loc in locations(response)), (name, response.text)
            assert "lone surrogate" in response.text


def test_the_connection_stays_usable_after_a_hostile_request(client: TestClient) -> None:
    assert post(client, FIELDS[0][1], "good \ud800 film").status_code == 422
    assert client.post("/v1/sentiment", json={"text": "good film"}).status_code == 200


def test_query_text_that_is_not_utf8(client: TestClient) -> None:
    response = client.get("/v1/attention.png?text=%FF%FE%ED%A0%80&model=tiny-sentiment&layer=0&head=0")
    assert response.status_code < 500, response.text


ANY_CHARACTER = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))


@pytest.mark.parametrize(("name", "build", "where"), FIELDS, ids=IDS)
def test_any_text_never_5xx_and_4xx_locate_the_field(client: TestClient, name: str, build: Body,
                                                     where: str) -> None:
    field = where.split(".")[1] if where.startswith("body.") else where.split(".")[0]

    @given(text=st.text(alphabet=ANY_CHARACTER, max_size=40))
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def property_holds(text: str) -> None:
        response = post(client, build, text)
        assert response.status_code < 500, (name, text, response.text)
        if 400 <= response.status_code < 500:
            assert any(field in loc for loc in locations(response)), (name, text, response.text)

    property_holds()
