"""The official `openai` client against a real `python -m app` process: completions, plain and streamed."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

openai = pytest.importorskip("openai")


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_openai_completions_round_trip(start_server: Callable[..., AbstractContextManager[Any]],
                                       tiny_lm_artifact: Path, backend: str) -> None:
    with start_server(tiny_lm_artifact.parent, runtime=backend) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        completion = client.completions.create(model="tiny-gpt2", prompt="The sea was", max_tokens=8,
                                               temperature=0)
        assert completion.object == "text_completion" and completion.model == "tiny-gpt2"
        choice = completion.choices[0]
        assert choice.finish_reason in ("length", "stop") and choice.text
        assert completion.usage is not None and 1 <= completion.usage.completion_tokens <= 8
        seeded = [client.completions.create(model="tiny-gpt2", prompt="The sea was", max_tokens=8, seed=9).choices[0]
                  .text for _ in range(2)]
        assert seeded[0] == seeded[1]
        stream = client.completions.create(model="tiny-gpt2", prompt="The sea was", max_tokens=8, temperature=0,
                                           stream=True)
        chunks = list(stream)
        assert len(chunks) >= 2 and chunks[-1].choices[0].finish_reason == choice.finish_reason
        assert "".join(c.choices[0].text for c in chunks) == choice.text
        with pytest.raises(openai.UnprocessableEntityError):
            client.completions.create(model="tiny-gpt2", prompt="", max_tokens=8)


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_openai_embeddings_round_trip(start_server: Callable[..., AbstractContextManager[Any]],
                                      tiny_embedding_artifact: Path, runtime: str) -> None:
    import numpy as np

    with start_server(tiny_embedding_artifact.parent, runtime=runtime) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        texts = ["the movie was very good .", "a dull plot", "it was fun"]
        result = client.embeddings.create(model="tiny-embed", input=texts)  # the client asks for base64
        assert result.model == "tiny-embed" and [d.index for d in result.data] == [0, 1, 2]
        vectors = np.array([d.embedding for d in result.data])
        assert vectors.shape == (3, 32)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        floats = client.embeddings.create(model="tiny-embed", input=texts, encoding_format="float")
        np.testing.assert_allclose(np.array([d.embedding for d in floats.data]), vectors, atol=1e-6)
        single = client.embeddings.create(model="tiny-embed", input=texts[1])
        np.testing.assert_allclose(single.data[0].embedding, vectors[1], atol=1e-5)
        assert result.usage.prompt_tokens == result.usage.total_tokens > 3
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="no-such-model", input="x")
