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


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_openai_chat_round_trip(start_server: Callable[..., AbstractContextManager[Any]], tiny_chat_artifact: Path,
                                tiny_lm_artifact: Path, tmp_path: Path, runtime: str) -> None:
    from transformers import AutoTokenizer

    from tests.lm_helpers import linked_models_dir

    models = linked_models_dir(tmp_path / "models", tiny_chat_artifact, tiny_lm_artifact)
    messages = [{"role": "system", "content": "You are a sailor."}, {"role": "user", "content": "The sea was"}]
    with start_server(models, runtime=runtime) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        assert {m.id for m in client.models.list()} == {"tiny-chat", "tiny-gpt2"}
        plain = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8, temperature=0)
        assert plain.object == "chat.completion" and plain.choices[0].message.role == "assistant"
        tokenizer = AutoTokenizer.from_pretrained(tiny_chat_artifact / "hf")
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        assert plain.usage is not None and plain.usage.prompt_tokens == len(ids["input_ids"] if hasattr(ids, "keys")
                                                                             else ids)
        stream = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8, temperature=0,
                                                stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == plain.choices[0].message.content
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
        two = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8, n=2, seed=5)
        again = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8, n=2, seed=5)
        assert [c.message.content for c in two.choices] == [c.message.content for c in again.choices]
        second = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8, seed=6)
        assert two.choices[1].message.content == second.choices[0].message.content
        text = plain.choices[0].message.content or ""
        if len(text) >= 4:
            stop = text[len(text) // 2:len(text) // 2 + 2]
            stopped = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8,
                                                     temperature=0, stop=[stop])
            assert stopped.choices[0].message.content == text[:text.index(stop)]
        with pytest.raises(openai.UnprocessableEntityError, match="no chat template"):
            client.chat.completions.create(model="tiny-gpt2", messages=messages)
