"""/v2, the Open Inference Protocol, through ASGI with a classifier, an embedder and a generator: metadata and
health, JSON inference equal to the /v1 routes' results, the binary tensor data extension decoded by hand,
the classification and generate extensions, every malformed tensor (400 naming the input), 404/503, auth,
metrics and the OpenAPI document."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests.conftest import LABELS
from tests.integration.conftest import serve
from tests.integration.conftest import warming as warming_app

TEXTS = ["the movie was very good .", "a dull and boring plot", "it was fun"]
PROMPT = "The sea was calm and"
CLASSIFY = "/v2/models/tiny-sentiment/infer"
EMBED = "/v2/models/tiny-embed/infer"
GPT = "/v2/models/tiny-gpt2"


@pytest.fixture(scope="module")
def models(tiny_artifact: Path, tiny_lm_artifact: Path, tiny_embedding_artifact: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kserve-models")
    for artifact in (tiny_artifact, tiny_lm_artifact, tiny_embedding_artifact):
        (folder / artifact.name).symlink_to(artifact, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def client(models: Path) -> Iterator[TestClient]:
    with serve(models, max_new_tokens=24) as c:
        yield c


def text_input(texts: list[str], name: str = "text") -> dict[str, Any]:
    return {"name": name, "shape": [len(texts)], "datatype": "BYTES", "data": texts}


def infer(client: TestClient, path: str, **body: Any) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    result: dict[str, Any] = response.json()
    return result


def outputs(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {output["name"]: output for output in result["outputs"]}


def pack_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def unpack_bytes(blob: bytes) -> list[str]:
    items, offset = [], 0
    while offset < len(blob):
        (size,) = struct.unpack_from("<I", blob, offset)
        items.append(blob[offset + 4:offset + 4 + size].decode("utf-8"))
        offset += 4 + size
    return items


def binary_request(header: dict[str, Any], *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head)),
                                    "Content-Type": "application/octet-stream"}


def created_at(artifact: Path) -> str:
    return str(json.loads((artifact / "manifest.json").read_text())["created_at"])


def test_server_metadata_and_health(client: TestClient) -> None:
    meta = client.get("/v2").json()
    assert meta["name"] == "transformer-stack" and meta["version"] == client.app.version  # type: ignore[attr-defined]
    assert {"binary_tensor_data", "generate", "classification"} <= set(meta["extensions"])
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


def test_model_metadata_per_task(client: TestClient, tiny_artifact: Path, tiny_embedding_artifact: Path,
                                 tiny_lm_artifact: Path) -> None:
    version = created_at(tiny_artifact)
    meta = client.get("/v2/models/tiny-sentiment").json()
    assert meta == {
        "name": "tiny-sentiment", "versions": [version], "platform": "onnx_onnxv1",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
        "properties": {"task": "text-classification", "max_length": "32", "labels": json.dumps(LABELS)}}
    assert client.get(f"/v2/models/tiny-sentiment/versions/{version}").json() == meta
    embed = client.get("/v2/models/tiny-embed").json()
    assert embed["versions"] == [created_at(tiny_embedding_artifact)]
    assert embed["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 32]}]
    assert embed["properties"]["dimension"] == "32"
    gpt = client.get(GPT).json()
    assert gpt["versions"] == [created_at(tiny_lm_artifact)]
    assert (gpt["inputs"], gpt["outputs"]) == ([{"name": "text_input", "datatype": "BYTES", "shape": [1]}],
                                               [{"name": "text_output", "datatype": "BYTES", "shape": [1]}])


def test_model_ready_unknown_model_and_version(client: TestClient, tiny_artifact: Path) -> None:
    version = created_at(tiny_artifact)
    for path in ("/v2/models/tiny-sentiment/ready", f"/v2/models/tiny-sentiment/versions/{version}/ready"):
        answer = client.get(path)
        assert (answer.status_code, answer.json()) == (200, {"name": "tiny-sentiment", "ready": True})
    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/tiny-sentiment/versions/7",
                 "/v2/models/tiny-sentiment/versions/7/ready"):
        answer = client.get(path)
        assert answer.status_code == 404 and list(answer.json()) == ["error"], path
    assert client.get("/v2/models/nope").json() == {"error": "unknown model 'nope'"}
    assert "has no version '7'" in client.get("/v2/models/tiny-sentiment/versions/7").json()["error"]
    for path, body in ((f"{GPT[:-9]}nope/infer", {"inputs": [text_input(TEXTS)]}),
                       ("/v2/models/nope/generate", {"text_input": PROMPT})):
        assert client.post(path, json=body).status_code == 404


def test_classifier_json_infer_equals_v1(client: TestClient, tiny_artifact: Path) -> None:
    v1 = client.post("/v1/sentiment", json={"texts": TEXTS, "model": "tiny-sentiment"}).json()["results"]
    result = infer(client, CLASSIFY, id="42", inputs=[text_input(TEXTS)])
    assert (result["model_name"], result["model_version"], result["id"]) == (
        "tiny-sentiment", created_at(tiny_artifact), "42")
    got = outputs(result)
    assert [o["name"] for o in result["outputs"]] == ["label", "probabilities"]
    assert got["label"] == {"name": "label", "datatype": "BYTES", "shape": [3], "data": [r["label"] for r in v1]}
    assert (got["probabilities"]["datatype"], got["probabilities"]["shape"]) == ("FP32", [3, 2])
    np.testing.assert_allclose(np.reshape(got["probabilities"]["data"], (3, 2)),
                               [[r["scores"][label] for label in LABELS] for r in v1], atol=1e-6)
    selected = infer(client, CLASSIFY, inputs=[text_input(TEXTS[:2])],
                   outputs=[{"name": "label"}])
    assert [o["name"] for o in selected["outputs"]] == ["label"] and "id" not in selected


def test_classification_extension_returns_top_k_with_labels(client: TestClient) -> None:
    v1 = client.post("/v1/sentiment", json={"texts": TEXTS, "model": "tiny-sentiment"}).json()["results"]
    result = infer(client, CLASSIFY, inputs=[text_input(TEXTS)],
                   outputs=[{"name": "probabilities", "parameters": {"classification": 2}}])
    top = outputs(result)["probabilities"]
    assert (top["datatype"], top["shape"]) == ("BYTES", [3, 2])
    rows = [top["data"][i:i + 2] for i in range(0, 6, 2)]
    for row, expected in zip(rows, v1, strict=True):
        value, index, label = row[0].split(":")
        assert label == expected["label"] == LABELS[int(index)]
        assert float(value) == pytest.approx(expected["score"], abs=1e-6)
        assert float(row[1].split(":")[0]) <= float(value)


def test_embedding_json_infer_equals_v1(client: TestClient) -> None:
    v1 = client.post("/v1/embeddings", json={"input": TEXTS, "model": "tiny-embed"}).json()
    result = infer(client, EMBED, inputs=[text_input(TEXTS)])
    (embedding,) = result["outputs"]
    assert (embedding["name"], embedding["datatype"], embedding["shape"]) == ("embedding", "FP32", [3, 32])
    np.testing.assert_allclose(np.reshape(embedding["data"], (3, 32)), [d["embedding"] for d in v1["data"]],
                               atol=1e-5)


def test_binary_request_and_response_round_trip(client: TestClient) -> None:
    plain = outputs(infer(client, CLASSIFY, inputs=[text_input(TEXTS)]))
    texts = [t.encode() for t in TEXTS]
    body, headers = binary_request({
        "inputs": [{"name": "text", "shape": [3], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(pack_bytes(texts))}}],
        "parameters": {"binary_data_output": True}}, pack_bytes(texts))
    response = client.post(CLASSIFY, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.content[:length])
    rest = response.content[length:]
    label, probs = header["outputs"]
    assert "data" not in label and "data" not in probs
    sizes = [label["parameters"]["binary_data_size"], probs["parameters"]["binary_data_size"]]
    assert sum(sizes) == len(rest) and sizes[1] == 3 * 2 * 4
    assert unpack_bytes(rest[:sizes[0]]) == plain["label"]["data"]
    decoded = np.frombuffer(rest[sizes[0]:], dtype="<f4").reshape(3, 2)
    np.testing.assert_array_equal(decoded, np.float32(np.reshape(plain["probabilities"]["data"], (3, 2))))
    body, headers = binary_request({
        "inputs": [{"name": "text", "shape": [3], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(pack_bytes(texts))}}],
        "outputs": [{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": True}}]},
        pack_bytes(texts))
    mixed = client.post(CLASSIFY, content=body, headers=headers)
    assert mixed.status_code == 200, mixed.text
    length = int(mixed.headers["Inference-Header-Content-Length"])
    label, probs = json.loads(mixed.content[:length])["outputs"]
    assert label["data"] == plain["label"]["data"] and probs["parameters"]["binary_data_size"] == 24
    assert len(mixed.content) == length + 24


def test_binary_embedding_request_json_response(client: TestClient) -> None:
    plain = outputs(infer(client, EMBED, inputs=[text_input(TEXTS)]))["embedding"]
    blob = pack_bytes([t.encode() for t in TEXTS])
    body, headers = binary_request({"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES",
                                                "parameters": {"binary_data_size": len(blob)}}]}, blob)
    response = client.post(EMBED, content=body, headers=headers)
    assert response.status_code == 200 and "Inference-Header-Content-Length" not in response.headers
    np.testing.assert_allclose(response.json()["outputs"][0]["data"], plain["data"], atol=1e-6)


def test_generate_stream_and_infer_agree_with_v1(client: TestClient, tiny_lm_artifact: Path) -> None:
    v1 = client.post("/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 8, "temperature": 0}).json()
    parameters = {"max_tokens": 8, "temperature": 0}
    answer = client.post(f"{GPT}/generate", json={"id": "g1", "text_input": PROMPT, "parameters": parameters})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": "g1", "model_name": "tiny-gpt2", "model_version": created_at(tiny_lm_artifact),
                             "text_output": v1["text"]}
    assert "id" not in client.post(f"{GPT}/generate", json={"text_input": PROMPT, "parameters": parameters}).json()
    stream = client.post(f"{GPT}/generate_stream", json={"text_input": PROMPT, "parameters": parameters})
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    blocks = stream.text.split("\n\n")
    assert blocks[-1] == "" and all(b.startswith("data: ") for b in blocks[:-1])
    events = [json.loads(b[len("data: "):]) for b in blocks[:-1]]
    assert len(events) >= 2 and all(e["model_name"] == "tiny-gpt2" and "error" not in e for e in events)
    assert "".join(e["text_output"] for e in events) == v1["text"]
    result = infer(client, f"{GPT}/infer", inputs=[text_input([PROMPT], "text_input")], parameters=parameters)
    assert result["outputs"] == [{"name": "text_output", "datatype": "BYTES", "shape": [1], "data": [v1["text"]]}]
    seeded = {"max_tokens": 10, "temperature": 1.0, "seed": 3}
    texts = {client.post(f"{GPT}/generate", json={"text_input": PROMPT, "parameters": seeded}).json()["text_output"]
             for _ in range(2)}
    texts.add(outputs(infer(client, f"{GPT}/infer", inputs=[text_input([PROMPT], "text_input")],
                            parameters=seeded))["text_output"]["data"][0])
    assert len(texts) == 1


BAD_UTF8 = pack_bytes([b"fine", b"\xff\xfe broken"])
MALFORMED: dict[str, tuple[str, dict[str, Any] | tuple[bytes, dict[str, str]], str]] = {
    "wrong datatype": (CLASSIFY, {"inputs": [{**text_input(TEXTS), "datatype": "FP32"}]},
                       "input 'text' has datatype FP32; the model takes BYTES"),
    "shape not the data's": (CLASSIFY, {"inputs": [{**text_input(TEXTS), "shape": [4]}]},
                             "input 'text' has shape [4] (4 elements) but its data holds 3"),
    "shape of another rank": (CLASSIFY, {"inputs": [{**text_input(TEXTS), "shape": [3, 1]}]},
                              "input 'text' has shape [3, 1]; the model takes [-1]"),
    "data nested deeper than the shape": (CLASSIFY, {"inputs": [{**text_input(TEXTS[:2]),
                                                                 "data": [[TEXTS[0]], [TEXTS[1]]]}]},
                                          "input 'text': element 0 is list, not a string"),
    "unknown input": (CLASSIFY, {"inputs": [{**text_input(TEXTS), "name": "txt"}]}, "unknown input 'txt'"),
    "missing input": (EMBED, {"inputs": []}, "missing input 'text'"),
    "input twice": (CLASSIFY, {"inputs": [text_input(TEXTS), text_input(TEXTS)]}, "input 'text' is given twice"),
    "no data": (CLASSIFY, {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"}]},
                "input 'text' has no data"),
    "number for BYTES": (EMBED, {"inputs": [{**text_input(TEXTS), "data": ["a", 2, "c"]}]},
                         "input 'text': element 1 is int, not a string"),
    "empty batch": (CLASSIFY, {"inputs": [text_input([])]}, "input 'text' has no elements"),
    "too many texts": (CLASSIFY, {"inputs": [text_input(["x"] * 65)]}, "input 'text': too many texts: 65 > 64"),
    "invalid UTF-8 bytes": (CLASSIFY, binary_request(
        {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                     "parameters": {"binary_data_size": len(BAD_UTF8)}}]}, BAD_UTF8),
        "input 'text': element 1 is not valid UTF-8"),
    "binary size past the end": (CLASSIFY, binary_request(
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 99}}]},
        pack_bytes([b"good"])), "input 'text': binary_data_size 99 goes past the end of the body"),
    "binary length past the element": (CLASSIFY, binary_request(
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]},
        struct.pack("<I", 10) + b"ab"), "input 'text': element 0 has length 10 but only 2 bytes are left"),
    "bytes left over": (CLASSIFY, binary_request(
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}]},
        pack_bytes([b"good"]) + b"tail"), "the body has 12 bytes of binary data after the JSON header"),
    "header length not a number": (CLASSIFY, (json.dumps({"inputs": [text_input(TEXTS)]}).encode(),
                                              {"Inference-Header-Content-Length": "abc"}),
                                   "Inference-Header-Content-Length must be the length of the JSON header"),
    "not JSON": (CLASSIFY, (b"{not json", {"Content-Type": "application/json"}), "Invalid JSON"),
    "unknown output": (CLASSIFY, {"inputs": [text_input(TEXTS)], "outputs": [{"name": "logits"}]},
                       "unknown output 'logits'"),
    "binary_data_output not a boolean": (CLASSIFY, {"inputs": [text_input(TEXTS)],
                                                    "parameters": {"binary_data_output": "yes"}},
                                         "parameter binary_data_output must be a boolean"),
    "classification on embeddings": (EMBED, {"inputs": [text_input(TEXTS)], "outputs": [
        {"name": "embedding", "parameters": {"classification": 2}}]}, "this model serves no classification"),
    "two prompts": (f"{GPT}/infer", {"inputs": [text_input([PROMPT, PROMPT], "text_input")]},
                    "input 'text_input' has shape [2]; the model takes [1]"),
    "max_tokens over the limit": (f"{GPT}/infer", {"inputs": [text_input([PROMPT], "text_input")],
                                                   "parameters": {"max_tokens": 25}},
                                  "max_tokens 25 is above the limit of 24"),
    "negative temperature": (f"{GPT}/infer", {"inputs": [text_input([PROMPT], "text_input")],
                                              "parameters": {"temperature": -1}}, "parameters.temperature"),
    "generate with a classifier": ("/v2/models/tiny-sentiment/generate", {"text_input": PROMPT},
                                   "model 'tiny-sentiment' is not a text-generation model"),
    "generate without text_input": (f"{GPT}/generate", {"parameters": {"max_tokens": 2}}, "text_input"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_requests_are_400_naming_the_problem(client: TestClient, case: str) -> None:
    path, request, message = MALFORMED[case]
    if isinstance(request, dict):
        response = client.post(path, json=request)
    else:
        response = client.post(path, content=request[0], headers=request[1])
    assert response.status_code == 400, response.text
    body = response.json()
    assert list(body) == ["error"] and message in body["error"], body


def test_requests_count_in_the_shared_metrics(client: TestClient) -> None:
    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    route = {"route": "/v2/models/{name}/infer", "method": "POST", "status": "200"}
    before = (sample("app_requests_total", route), sample("app_batch_size_count", {"model": "tiny-embed"}))
    infer(client, EMBED, inputs=[text_input(TEXTS)])
    after = (sample("app_requests_total", route), sample("app_batch_size_count", {"model": "tiny-embed"}))
    assert after[0] == before[0] + 1 and after[1] >= before[1] + 1


def test_openapi_documents_every_v2_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operations = {(path, method): op for path, methods in spec["paths"].items() if path.startswith("/v2")
                  for method, op in methods.items()}
    assert len(operations) == 13
    for (path, method), op in operations.items():
        assert op.get("summary"), (path, method)
        assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/KServeError"}, (path, method)
        assert "422" not in op["responses"], (path, method)  # /v2 answers invalid input with 400
        if "{name}" in path:
            assert "404" in op["responses"], (path, method)
    infer_op = operations[("/v2/models/{name}/infer", "post")]
    assert set(infer_op["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert set(infer_op["requestBody"]["content"]["application/json"]["examples"]) == {
        "classifier", "classifier-top-1", "embedder", "generator"}
    assert {"400", "404", "429", "503", "504"} <= set(infer_op["responses"])
    assert spec["components"]["schemas"]["InferenceResponse"]["examples"]
    assert spec["components"]["schemas"]["TextGenerateRequest"]["examples"]


def test_keys_guard_v2_and_errors_keep_the_envelope(tiny_artifact: Path) -> None:
    with serve(tiny_artifact.parent, api_keys="secret-key") as locked:
        refused = locked.post(CLASSIFY, json={"inputs": [text_input(TEXTS)]})
        assert refused.status_code == 401 and list(refused.json()) == ["error"]
        allowed = locked.post(CLASSIFY, json={"inputs": [text_input(TEXTS)]},
                              headers={"Authorization": "Bearer secret-key"})
        assert allowed.status_code == 200


def test_not_ready_is_503(tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with warming_app(tiny_artifact.parent, monkeypatch) as (warming, release):
        for path in ("/v2/health/ready", "/v2/models/tiny-sentiment/ready"):
            answer = warming.get(path)
            assert answer.status_code == 503 and list(answer.json()) == ["error"], path
        assert "warming" in warming.get("/v2/models/tiny-sentiment/ready").json()["error"]
        assert warming.post(CLASSIFY, json={"inputs": [text_input(TEXTS)]}).status_code == 503
        assert warming.get("/v2/models/tiny-sentiment").status_code == 200  # metadata needs no warm model
        release.set()
        deadline = time.monotonic() + 30
        while warming.get("/v2/models/tiny-sentiment/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
