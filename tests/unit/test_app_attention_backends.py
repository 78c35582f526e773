"""Backend.attend on the tiny exported model (2 layers x 4 heads): shapes, tokens, torch vs onnx parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.tasks.attention import TokenLimitError
from app.tasks.classification import Classifier as Backend
from contract import Artifact, load_schema, open_artifact
from tests.app_helpers import make_model

SENTENCES = ["the movie was very good .", "a great and warm story", "it was not fun"]


@pytest.fixture(scope="module")
def artifact(tiny_artifact: Path) -> Artifact:
    return open_artifact(tiny_artifact, load_schema())


@pytest.fixture(scope="module")
def backends(artifact: Artifact) -> dict[str, Backend]:
    loaded = {}
    for kind in ("onnx", "torch"):
        loaded[kind] = make_model(artifact, kind)
        loaded[kind].load()
    return loaded


@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_shapes_tokens_and_prediction(backends: dict[str, Backend], kind: str) -> None:
    backend = backends[kind]
    result = backend.attend("the movie was very good .", max_tokens=64)
    assert result.tokens == ["[CLS]", "the", "movie", "was", "very", "good", ".", "[SEP]"]
    assert result.attentions.shape == (2, 4, 8, 8)
    assert result.attentions.dtype == np.float32
    assert np.allclose(result.attentions.sum(axis=-1), 1.0, atol=1e-5)
    assert (result.attentions >= 0).all()
    (classified,) = backend.classify(["the movie was very good ."], "truncate")
    assert result.prediction.label == classified.label
    assert result.prediction.scores == pytest.approx(classified.scores, abs=1e-5)


def test_torch_and_onnx_attentions_agree(backends: dict[str, Backend]) -> None:
    for text in SENTENCES:
        onnx, torch = (backends[kind].attend(text, max_tokens=64) for kind in ("onnx", "torch"))
        assert onnx.tokens == torch.tokens
        assert onnx.attentions.shape == torch.attentions.shape
        assert np.abs(onnx.attentions - torch.attentions).max() < 1e-4
        assert onnx.prediction.scores == pytest.approx(torch.prediction.scores, abs=1e-4)


@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_token_cap_refuses_instead_of_truncating(backends: dict[str, Backend], kind: str) -> None:
    backend = backends[kind]
    assert len(backend.attend("good " * 6, max_tokens=8).tokens) == 8
    with pytest.raises(TokenLimitError, match="text is 9 tokens; attention is limited to 8 tokens") as caught:
        backend.attend("good " * 7, max_tokens=8)
    assert caught.value.limit == 8
    with pytest.raises(TokenLimitError, match="more than 32 tokens; attention is limited to 32"):
        backend.attend("good " * 40, max_tokens=64)  # the tiny model's max_length is 32


def test_torch_attention_model_is_eager_and_shares_the_weights(backends: dict[str, Backend]) -> None:
    torch_backend = backends["torch"]
    eager, model = torch_backend.forward.attention_model, torch_backend.forward.model  # type: ignore[attr-defined]
    assert eager.config._attn_implementation == "eager"
    for (name, eager_param), (_, param) in zip(eager.named_parameters(), model.named_parameters(), strict=True):
        assert eager_param.data_ptr() == param.data_ptr(), name


def test_attend_before_load(artifact: Artifact) -> None:
    with pytest.raises(RuntimeError, match="before load"):
        make_model(artifact, "onnx").attend("good", max_tokens=64)
