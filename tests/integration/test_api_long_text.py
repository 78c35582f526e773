"""Long texts through the app on both runtimes: the strategy per request and by default, `strategy` and `chunks`
in each result, the mean over windows, the token and window limits (422), and `long_text` on /v2.

The untrained `tiny-sentiment` answers about 0.5 for every text; what a strategy reads is checked on `toy`, the
same tiny BERT trained on the toy task (its adjective decides the label)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.registry import Registry
from app.tasks.classification import Classifier
from app.tasks.text import softmax
from tests.conftest import LABELS, train_toy_classifier
from tests.integration.conftest import serve
from training.export.text_classification import export_classifier

MAX_TOKENS, MAX_WINDOWS = 200, 12
"""The tiny model reads 32 tokens: a room of 30 beside [CLS] and [SEP], a window every 23 tokens with chunks."""
NEGATIVE = "the plot was very dull . " * 5  # 30 tokens: all a truncating reader of MIXED sees
MIXED = NEGATIVE + "the movie was very good . " * 10  # 90 tokens


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, tiny_artifact: Path) -> Path:
    """tiny-sentiment, and toy: the tiny BERT trained 20 steps on the toy task (max_length 32 too)."""
    root = tmp_path_factory.mktemp("long-text") / "models"
    shutil.copytree(tiny_artifact, root / tiny_artifact.name)
    model, tokenizer = train_toy_classifier(tiny_base)
    export_classifier(model, tokenizer, root, "toy", labels=LABELS, base_model=str(tiny_base), max_length=32,
                      metrics={"test_accuracy": 1.0}, training={"note": "toy"})
    return root


@pytest.fixture(scope="module", params=["onnx", "torch"])
def client(request: pytest.FixtureRequest, models: Path) -> Iterator[TestClient]:
    with serve(models, runtime=request.param, default_model="tiny-sentiment", max_text_tokens=MAX_TOKENS,
               max_request_windows=MAX_WINDOWS) as c:
        yield c


def classify(client: TestClient, **body: Any) -> list[dict[str, Any]]:
    response = client.post("/v1/sentiment", json=body)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def classifier(client: TestClient, name: str) -> Classifier:
    registry: Registry = client.app.state.service.registry  # type: ignore[attr-defined]
    _, found = registry.get(name, "text-classification")
    assert isinstance(found, Classifier)
    return found


@pytest.mark.parametrize(("strategy", "chunks", "truncated"), [
    ("truncate", 1, True), ("head+tail", 1, True), ("chunks", 4, False)])
def test_each_result_says_how_its_text_was_read(client: TestClient, strategy: str, chunks: int,
                                                truncated: bool) -> None:
    long, short = classify(client, texts=[MIXED, "good fun"], long_text=strategy)
    assert (long["strategy"], long["chunks"], long["truncated"]) == (strategy, chunks, truncated)
    assert (short["strategy"], short["chunks"], short["truncated"]) == (strategy, 1, False)


def test_the_strategies_read_different_parts_of_a_long_text(client: TestClient) -> None:
    read = {strategy: classify(client, text=MIXED, model="toy", long_text=strategy)[0]
            for strategy in ("truncate", "head+tail", "chunks")}
    assert read["truncate"]["scores"] == pytest.approx(classify(client, text=NEGATIVE, model="toy")[0]["scores"])
    assert (read["truncate"]["label"], read["chunks"]["label"]) == ("negative", "positive")
    assert read["head+tail"]["scores"] != pytest.approx(read["truncate"]["scores"], abs=1e-4)
    short = {strategy: classify(client, text="good fun", model="toy", long_text=strategy)[0]["scores"]["positive"]
             for strategy in ("truncate", "head+tail", "chunks")}
    assert short["truncate"] == short["head+tail"] == short["chunks"]


def test_chunks_is_the_default(client: TestClient) -> None:
    (result,) = classify(client, text=MIXED)
    assert (result["strategy"], result["chunks"]) == ("chunks", 4)


def test_the_default_comes_from_the_settings(tiny_artifact: Path) -> None:
    with serve(tiny_artifact.parent, long_text_strategy="head+tail") as client:
        assert classify(client, text=MIXED)[0]["strategy"] == "head+tail"
        assert classify(client, text=MIXED, long_text="chunks")[0]["strategy"] == "chunks"


def test_a_model_named_in_the_settings_has_its_own_default(models: Path) -> None:
    with serve(models, long_text_strategies={"toy": "truncate"}, max_text_tokens=MAX_TOKENS,
               max_request_windows=MAX_WINDOWS) as client:
        assert classify(client, text=MIXED, model="toy")[0]["strategy"] == "truncate"
        assert classify(client, text=MIXED, model="tiny-sentiment")[0]["strategy"] == "chunks"
        assert classify(client, text=MIXED, model="toy", long_text="head+tail")[0]["strategy"] == "head+tail"


def test_chunks_of_repeated_content_read_as_the_content_once(client: TestClient) -> None:
    long, short = classify(client, texts=["fun " * 99, "fun " * 30])
    assert (long["chunks"], short["chunks"]) == (4, 1)  # 99 tokens: 4 full windows, each the 30 tokens of short
    assert long["scores"] == pytest.approx(short["scores"], abs=1e-5)
    for sentence, label in (("the movie was very good . ", "positive"), ("the plot was very dull . ", "negative")):
        long, short = classify(client, texts=[sentence * 20, sentence], model="toy")  # 120 tokens, 5 windows
        assert (long["chunks"], short["chunks"], long["label"], short["label"]) == (5, 1, label, label)


def test_chunks_average_the_windows_logits_weighted_by_length(client: TestClient) -> None:
    model = classifier(client, "toy")
    (split,) = model.split([MIXED], "chunks")
    assert [len(window) for window in split.windows] == [32, 32, 32, 23]
    logits = np.stack(model.predict(split.windows)).astype(np.float64)
    expected = softmax(np.average(logits, axis=0, weights=[32, 32, 32, 23]))
    assert np.abs(expected - softmax(logits.mean(axis=0))).max() > 1e-3  # the weights matter for this text
    (result,) = classify(client, text=MIXED, model="toy", long_text="chunks")
    assert [result["scores"][label] for label in ("negative", "positive")] == pytest.approx(expected, abs=1e-5)
    assert result["label"] == ("negative", "positive")[int(expected.argmax())]


def assert_422(response: Any, where: list[Any], words: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "invalid_input" and words in error["error"]
    assert error["detail"][0]["loc"] == where and error["detail"][0]["type"] == "limit_exceeded"


@pytest.mark.parametrize("strategy", ["truncate", "head+tail", "chunks"])
def test_a_text_over_the_token_limit_is_422_whatever_the_strategy(client: TestClient, strategy: str) -> None:
    at_limit = "good " * MAX_TOKENS
    over = at_limit + "fun"
    response = client.post("/v1/sentiment", json={"texts": ["good", over], "long_text": strategy})
    assert_422(response, ["body", "texts", 1], f"{MAX_TOKENS + 1} > {MAX_TOKENS} tokens (APP_MAX_TEXT_TOKENS)")
    assert_422(client.post("/v1/sentiment", json={"text": over}), ["body", "text"], "APP_MAX_TEXT_TOKENS")
    assert classify(client, text=at_limit, long_text="truncate")[0]["truncated"] is True


def test_the_windows_of_a_request_are_capped_together(client: TestClient) -> None:
    three = "good " * 76  # 1 + ceil((76 - 30) / 23) = 3 windows
    assert [r["chunks"] for r in classify(client, texts=[three] * 4)] == [3] * 4  # 12 windows: the cap
    response = client.post("/v1/sentiment", json={"texts": [three] * 4 + ["fun"]})
    assert_422(response, ["body", "texts"], "13 windows")
    assert "APP_MAX_REQUEST_WINDOWS" in response.json()["error"]
    assert len(classify(client, texts=[three] * 5, long_text="truncate")) == 5  # one window each


def test_an_unknown_strategy_is_422(client: TestClient) -> None:
    response = client.post("/v1/sentiment", json={"text": "good", "long_text": "middle"})
    assert response.status_code == 422
    assert "long_text" in json.dumps(response.json()["detail"])


def test_v2_infer_takes_long_text_as_a_request_parameter(client: TestClient) -> None:
    def infer(**parameters: Any) -> Any:
        body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [MIXED]}],
                "parameters": parameters}
        return client.post("/v2/models/tiny-sentiment/infer", json=body)

    for strategy in ("truncate", "chunks"):
        response = infer(long_text=strategy)
        assert response.status_code == 200, response.text
        (probabilities,) = [o["data"] for o in response.json()["outputs"] if o["name"] == "probabilities"]
        v1 = classify(client, text=MIXED, long_text=strategy)[0]["scores"]
        assert probabilities == pytest.approx([v1["negative"], v1["positive"]], abs=1e-6)
    refused = infer(long_text="middle")
    assert refused.status_code == 400 and "long_text" in refused.json()["error"]
