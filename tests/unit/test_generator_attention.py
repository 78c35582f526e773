"""Generator attend() on the tiny LM artifact (GPT-2, 2 layers x 2 heads): shapes, causality, next-token top-k,
torch vs onnx parity, the lazily loaded attention session, and artifacts without an attention graph."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from app.runtimes import onnx as onnx_runtime
from app.tasks.attention import AttentionResult, AttentionUnavailable, TokenLimitError, TopKPrediction
from app.tasks.generation.attention import TOP_K, AttendingGenerator
from app.tasks.generation.torch import EagerAttention
from contract import Artifact, load_schema, open_artifact
from tests.app_helpers import make_model
from tests.lm_helpers import CONTEXT, without_attention_graph

TEXTS = ["Call me Ishmael.", "The sea was calm and the whale rose slowly"]
KINDS = ["onnx", "torch"]


def load(artifact: Artifact, kind: str) -> AttendingGenerator:
    generator = make_model(artifact, kind)
    assert isinstance(generator, AttendingGenerator)
    generator.load()
    return generator


@pytest.fixture(scope="module")
def artifact(tiny_lm_artifact: Path) -> Artifact:
    return open_artifact(tiny_lm_artifact, load_schema())


@pytest.fixture(scope="module")
def generators(artifact: Artifact) -> dict[str, AttendingGenerator]:
    return {kind: load(artifact, kind) for kind in KINDS}


def top_k(result: AttentionResult) -> TopKPrediction:
    assert isinstance(result.prediction, TopKPrediction)
    return result.prediction


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_rows_and_causal_mask(generators: dict[str, AttendingGenerator], kind: str) -> None:
    generator = generators[kind]
    ids = generator.encode(TEXTS[1])
    result = generator.attend(TEXTS[1], max_tokens=64)
    assert result.tokens == [generator.tokenizer.id_to_token(i) for i in ids]
    assert "".join(result.tokens).replace("Ġ", " ") == TEXTS[1]  # byte-level BPE: the tokens spell the text
    assert result.attentions.shape == (2, 2, len(ids), len(ids))
    assert result.attentions.dtype == np.float32
    assert np.allclose(result.attentions.sum(axis=-1), 1.0, atol=1e-5)
    assert (result.attentions >= 0).all()
    assert np.triu(result.attentions, k=1).max() < 1e-6  # no query attends to a later token
    assert np.allclose(result.attentions[..., 0, 0], 1.0)  # the first token sees only itself


@pytest.mark.parametrize("kind", KINDS)
def test_top_k_is_the_models_next_token_distribution(generators: dict[str, AttendingGenerator], kind: str) -> None:
    generator = generators[kind]
    prediction = top_k(generator.attend(TEXTS[0], max_tokens=64))
    probabilities = [candidate.probability for candidate in prediction.top_k]
    assert len(probabilities) == TOP_K
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1 + 1e-6
    model: Any = generators["torch"].model
    with torch.no_grad():
        logits = model(torch.tensor([generator.encode(TEXTS[0])])).logits[0, -1].double()
    expected = torch.softmax(logits, dim=-1).topk(TOP_K)
    assert [candidate.id for candidate in prediction.top_k] == expected.indices.tolist()
    np.testing.assert_allclose(probabilities, expected.values.numpy(), atol=1e-5)
    for candidate in prediction.top_k:
        assert candidate.token == generator.tokenizer.id_to_token(candidate.id)
        assert candidate.text == generator.tokenizer.decode([candidate.id], skip_special_tokens=False)


def test_torch_and_onnx_agree(generators: dict[str, AttendingGenerator]) -> None:
    for text in TEXTS:
        onnx, torch_result = (generators[kind].attend(text, max_tokens=64) for kind in KINDS)
        assert onnx.tokens == torch_result.tokens
        assert onnx.attentions.shape == torch_result.attentions.shape
        assert np.abs(onnx.attentions - torch_result.attentions).max() < 1e-4
        onnx_top, torch_top = top_k(onnx).top_k, top_k(torch_result).top_k
        assert [c.id for c in onnx_top] == [c.id for c in torch_top]
        np.testing.assert_allclose([c.probability for c in onnx_top], [c.probability for c in torch_top], atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_token_cap_refuses_instead_of_truncating(generators: dict[str, AttendingGenerator], kind: str) -> None:
    generator = generators[kind]
    count = len(generator.encode(TEXTS[1]))
    assert len(generator.attend(TEXTS[1], max_tokens=count).tokens) == count
    with pytest.raises(TokenLimitError, match=f"text is {count} tokens; attention is limited to {count - 1} "):
        generator.attend(TEXTS[1], max_tokens=count - 1)
    with pytest.raises(TokenLimitError, match=f"attention is limited to {CONTEXT} tokens") as caught:
        generator.attend("the sea " * CONTEXT, max_tokens=512)  # beyond the tiny model's context window
    assert caught.value.limit == CONTEXT


def test_torch_view_is_eager_and_shares_the_weights(generators: dict[str, AttendingGenerator]) -> None:
    generator = generators["torch"]
    view = generator._attention_forward()
    assert isinstance(view, EagerAttention)
    model: Any = generator.model
    assert view.model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"  # generation keeps the fast path
    pairs = zip(view.model.named_parameters(), model.named_parameters(), strict=True)
    for (name, eager_param), (_, param) in pairs:
        assert eager_param.data_ptr() == param.data_ptr(), name


def test_onnx_attention_session_loads_lazily_and_once(artifact: Artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    generator = load(artifact, "onnx")
    opened: list[str] = []
    real = ort.InferenceSession

    def counting(path: str, **kwargs: Any) -> ort.InferenceSession:
        opened.append(Path(path).name)
        time.sleep(0.2)  # widen the window in which the other threads could load it again
        return real(path, **kwargs)

    monkeypatch.setattr(onnx_runtime.ort, "InferenceSession", counting)
    assert generator._attention is None  # nothing loaded by load() or generation
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: generator.attend(TEXTS[0], max_tokens=64), range(4)))
    assert opened == ["model.attn.onnx"]
    assert all(np.array_equal(r.attentions, results[0].attentions) for r in results)


def test_artifact_without_attention_graph(artifact: Artifact, tmp_path: Path) -> None:
    old = open_artifact(without_attention_graph(artifact.path, tmp_path), load_schema())
    assert old.manifest["schema_version"] == "1.1"
    onnx, torch_generator = load(old, "onnx"), load(old, "torch")
    onnx.warmup()  # generation is unaffected
    with pytest.raises(AttentionUnavailable, match=r"no ONNX attention graph .* APP_RUNTIME=torch"):
        onnx.attend(TEXTS[0], max_tokens=64)
    assert torch_generator.attend(TEXTS[0], max_tokens=64).attentions.shape[:2] == (2, 2)
