"""The official Triton client (`tritonclient.http`) against a real `python -m app` process over /v2: health,
metadata, inference with JSON and binary outputs (its default) on the classifier and the embedder, the
classification extension, a versioned request and errors; the generate extension (which tritonclient does not
wrap) with plain httpx."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

httpclient = pytest.importorskip("tritonclient.http")
triton_utils = pytest.importorskip("tritonclient.utils")

TEXTS = ["the movie was very good .", "a dull and boring plot", "it was fun"]


def text_input(texts: list[str], binary: bool = True, name: str = "text") -> Any:
    tensor = httpclient.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary)
    return tensor


def decoded(array: Any) -> list[str]:
    return [item.decode() if isinstance(item, bytes) else str(item) for item in array.reshape(-1)]


def test_tritonclient_round_trip(start_server: Callable[..., AbstractContextManager[Any]], tiny_artifact: Path,
                                 tiny_embedding_artifact: Path, tiny_lm_artifact: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for artifact in (tiny_artifact, tiny_embedding_artifact, tiny_lm_artifact):
        (models / artifact.name).symlink_to(artifact, target_is_directory=True)
    with start_server(models) as server:
        client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
        v1 = httpx.Client(base_url=server.url, timeout=30)
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("tiny-sentiment") and not client.is_model_ready("no-such-model")
        assert {"binary_tensor_data", "generate"} <= set(client.get_server_metadata()["extensions"])
        meta = client.get_model_metadata("tiny-sentiment")
        assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
            ("label", "BYTES", [-1]), ("probabilities", "FP32", [-1, 2])]
        labels = json.loads(meta["properties"]["labels"])

        sentiment = v1.post("/v1/sentiment", json={"texts": TEXTS, "model": "tiny-sentiment"}).json()["results"]
        expected = np.array([[r["scores"][label] for label in labels] for r in sentiment], dtype=np.float32)
        as_json = client.infer("tiny-sentiment", [text_input(TEXTS, binary=False)], outputs=[
            httpclient.InferRequestedOutput("label", binary_data=False),
            httpclient.InferRequestedOutput("probabilities", binary_data=False)])
        as_binary = client.infer("tiny-sentiment", [text_input(TEXTS)])  # binary input, binary outputs
        for result in (as_json, as_binary):
            assert decoded(result.as_numpy("label")) == [r["label"] for r in sentiment]
            probabilities = result.as_numpy("probabilities")
            assert probabilities.dtype == np.float32 and probabilities.shape == (3, 2)
            np.testing.assert_allclose(probabilities, expected, atol=1e-6)
        assert as_binary.get_response()["outputs"][0]["parameters"]["binary_data_size"] > 0
        assert "data" in as_json.get_response()["outputs"][0]
        top = client.infer("tiny-sentiment", [text_input(TEXTS)], model_version=meta["versions"][0],
                           outputs=[httpclient.InferRequestedOutput("probabilities", class_count=1)])
        assert [item.split(":")[2] for item in decoded(top.as_numpy("probabilities"))] == [
            r["label"] for r in sentiment]

        vectors = np.array([d["embedding"] for d in v1.post("/v1/embeddings", json={
            "input": TEXTS, "model": "tiny-embed"}).json()["data"]], dtype=np.float32)
        embed_meta = client.get_model_metadata("tiny-embed")
        assert embed_meta["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 32]}]
        for outputs in ([httpclient.InferRequestedOutput("embedding", binary_data=False)], None):
            embedded = client.infer("tiny-embed", [text_input(TEXTS)], outputs=outputs).as_numpy("embedding")
            assert embedded.shape == (3, 32)
            np.testing.assert_allclose(embedded, vectors, atol=1e-5)

        wrong = httpclient.InferInput("text", [2], "FP32")
        wrong.set_data_from_numpy(np.zeros(2, dtype=np.float32))
        with pytest.raises(triton_utils.InferenceServerException) as refused:
            client.infer("tiny-sentiment", [wrong])
        assert refused.value.status() == "400" and "input 'text' has datatype FP32" in refused.value.message()
        with pytest.raises(triton_utils.InferenceServerException) as unknown:
            client.infer("no-such-model", [text_input(TEXTS)])
        assert unknown.value.status() == "404"

        body = {"text_input": "The sea was calm and", "parameters": {"max_tokens": 8, "temperature": 0}}
        generated = v1.post("/v2/models/tiny-gpt2/generate", json=body)
        assert generated.status_code == 200 and generated.json()["model_name"] == "tiny-gpt2"
        reference = v1.post("/v1/generate", json={"prompt": body["text_input"], "max_new_tokens": 8,
                                                  "temperature": 0}).json()["text"]
        assert generated.json()["text_output"] == reference
        prompt = httpclient.InferInput("text_input", [1], "BYTES")
        prompt.set_data_from_numpy(np.array([body["text_input"].encode()], dtype=np.object_))
        answer = client.infer("tiny-gpt2", [prompt], parameters={"max_tokens": 8, "temperature": 0})
        assert decoded(answer.as_numpy("text_output")) == [reference]
        client.close()
        v1.close()
