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
    with start_server(tiny_lm_artifact.parent, backend=backend) as server:
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
