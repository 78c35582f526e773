"""Continuous batching on the tiny LM (both backends): batched text == text alone, prompts that arrive together
prefilled in one left-padded call; and through HTTP: 429 with Retry-After, timeouts (504, stream finish_reason
`timeout`), a disconnecting client stops its generation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.scheduler import Scheduler
from app.tasks.generation.generator import Generator
from app.tasks.generation.sampling import SamplingParams
from app.tasks.generation.sequence import Chunk, GenerationParams
from contract import load_schema, open_artifact
from tests.app_helpers import make_model
from tests.integration.conftest import serve

PROMPTS = ["The sea", "Call me Ishmael. Some years ago, never mind", "whale", "It is a way I have of driving off the",
           "The captain walked the deck at night and the sailors sang of home"]
GREEDY = SamplingParams(temperature=0)
SAMPLED = SamplingParams(temperature=0.9, top_k=40, top_p=0.95, repetition_penalty=1.2)


def alone(generator: Generator, prompt: str, params: GenerationParams) -> str:
    return "".join(chunk.text for chunk in generator.stream(generator.encode(prompt), params))


def recording(generator: Generator, delay: float = 0.0) -> list[int]:
    """Make ``generator`` record the rows of each decode step (and sleep ``delay`` s in each)."""
    rows: list[int] = []
    decode = generator._decode

    def wrapped(tokens: np.ndarray, cache: Any) -> Any:
        rows.append(len(tokens))
        time.sleep(delay)
        return decode(tokens, cache)

    generator._decode = wrapped  # type: ignore[method-assign]
    return rows


def prefills(generator: Generator) -> list[int]:
    """Make ``generator`` record the prompts of each prefill call."""
    calls: list[int] = []
    prefill = generator._prefill

    def wrapped(prompts: list[list[int]]) -> Any:
        calls.append(len(prompts))
        return prefill(prompts)

    generator._prefill = wrapped  # type: ignore[method-assign]
    return calls


def together(scheduler: Scheduler, generator: Generator, requests: list[tuple[str, GenerationParams]]) -> list[str]:
    """Submit ``requests`` while the scheduler's loop is held (so that it takes them all at once); their texts."""
    results: list[list[str]] = [[] for _ in requests]
    done = [threading.Event() for _ in requests]
    with scheduler._wake:
        for i, (prompt, params) in enumerate(requests):
            def deliver(item: Chunk | Exception, i: int = i) -> None:
                assert isinstance(item, Chunk)
                results[i].append(item.text)
                if item.finish_reason is not None:
                    done[i].set()

            scheduler.submit(generator.encode(prompt), params, deliver, time.monotonic() + 60)
    assert all(event.wait(60) for event in done)
    return ["".join(texts) for texts in results]


@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_a_left_padded_prefill_reads_each_prompt_as_alone(tiny_lm_artifact: Path, kind: str) -> None:
    generator = make_model(open_artifact(tiny_lm_artifact, load_schema()), kind)
    generator.load()
    prompts = [generator.encode(prompt) for prompt in PROMPTS]
    logits, cache = generator._prefill(prompts)
    tokens = logits.argmax(axis=-1)
    after = generator._decode(tokens, cache)
    for row, prompt in enumerate(prompts):  # the logits of the prompt and of the next step, as alone
        own, own_cache = generator._prefill([prompt])
        np.testing.assert_allclose(logits[row], own[0], atol=1e-5)
        np.testing.assert_allclose(after[row], generator._decode(tokens[row:row + 1], own_cache)[0], atol=1e-5)


@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_prompts_that_arrive_together_are_prefilled_in_one_call(tiny_lm_artifact: Path, kind: str) -> None:
    generator = make_model(open_artifact(tiny_lm_artifact, load_schema()), kind)
    generator.load()
    requests = [(prompt, GenerationParams(max_new_tokens=10, sampling=GREEDY)) for prompt in PROMPTS[:4]]
    requests.append((PROMPTS[4], GenerationParams(max_new_tokens=10, sampling=SAMPLED, seed=3)))
    assert len({len(generator.encode(prompt)) for prompt, _ in requests}) == len(requests)
    expected = [alone(generator, prompt, params) for prompt, params in requests]
    calls = prefills(generator)
    scheduler = Scheduler(generator, "tiny", max_batch=8, max_queue=8, max_prefill_tokens=2048)
    assert together(scheduler, generator, requests) == expected
    assert calls == [5]  # five prompts of five lengths, one left-padded call
    assert together(scheduler, generator, requests[:1]) == expected[:1] and calls == [5, 1]
    scheduler.close()


@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_batched_text_is_the_text_alone(tiny_lm_artifact: Path, kind: str) -> None:
    generator = make_model(open_artifact(tiny_lm_artifact, load_schema()), kind)
    generator.load()
    requests = [(prompt, GenerationParams(max_new_tokens=12 + 3 * i, sampling=GREEDY))
                for i, prompt in enumerate(PROMPTS)]
    requests.append((PROMPTS[0], GenerationParams(max_new_tokens=16, sampling=SAMPLED, seed=7)))
    expected = [alone(generator, prompt, params) for prompt, params in requests]
    rows = recording(generator)
    scheduler = Scheduler(generator, "tiny", max_batch=8, max_queue=8, max_prefill_tokens=2048)
    results: list[list[Chunk]] = [[] for _ in requests]
    done = [threading.Event() for _ in requests]

    def start(i: int) -> None:
        def deliver(item: Chunk | Exception) -> None:
            assert isinstance(item, Chunk)
            results[i].append(item)
            if item.finish_reason is not None:
                done[i].set()

        prompt, params = requests[i]
        scheduler.submit(generator.encode(prompt), params, deliver, time.monotonic() + 60)

    for i in range(4):
        start(i)
    while not results[0]:
        time.sleep(0.001)
    for i in range(4, len(requests)):  # join while the first ones are decoding
        start(i)
    assert all(event.wait(60) for event in done)
    scheduler.close()
    assert ["".join(c.text for c in chunks) for chunks in results] == expected
    assert max(rows) >= 4 and rows[-1] < max(rows)  # batched, and rows left as they finished


@pytest.fixture
def slow_server(tiny_lm_artifact: Path) -> Iterator[Callable[..., tuple[TestClient, list[int]]]]:
    """``start(**settings)`` -> a client of the app whose generator sleeps 50 ms per decode step, and the rows
    of each step."""
    with contextlib.ExitStack() as stack:

        def start(**settings: Any) -> tuple[TestClient, list[int]]:
            client = stack.enter_context(serve(tiny_lm_artifact.parent, runtime="onnx", max_new_tokens=40,
                                               **settings))
            generator = client.app.state.service.registry.entries["tiny-gpt2"].model  # type: ignore[attr-defined]
            return client, recording(generator, delay=0.05)

        yield start


def test_a_full_queue_answers_429_with_retry_after(slow_server: Callable[..., tuple[TestClient, list[int]]]) -> None:
    client, rows = slow_server(max_batch_sequences=1, max_queue=0)
    statuses: list[int] = []
    first = threading.Thread(target=lambda: statuses.append(
        client.post("/v1/generate", json={"prompt": "The sea", "max_new_tokens": 20, "temperature": 0}).status_code))
    first.start()
    while not rows:
        time.sleep(0.005)
    for body in ({"prompt": "The sea", "max_new_tokens": 4}, {"prompt": "The sea", "max_new_tokens": 4,
                                                               "stream": True}):
        refused = client.post("/v1/generate", json=body)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1", refused.text
        assert refused.json()["code"] == "overloaded"
    first.join(30)
    assert statuses == [200]
    assert client.post("/v1/generate", json={"prompt": "The sea", "max_new_tokens": 2}).status_code == 200


def test_timeouts_504_or_end_the_stream(slow_server: Callable[..., tuple[TestClient, list[int]]]) -> None:
    openai = pytest.importorskip("openai")
    client, _ = slow_server(request_timeout_s=0.3)
    body = {"prompt": "The sea", "max_new_tokens": 40, "temperature": 0}
    timed_out = client.post("/v1/generate", json=body)
    assert timed_out.status_code == 504 and timed_out.json()["code"] == "timeout", timed_out.text
    events = [json.loads(line[len("data: "):]) for line in
              client.post("/v1/generate", json={**body, "stream": True}).text.split("\n\n") if line]
    assert events[-1]["finish_reason"] == "timeout" and 1 <= events[-1]["usage"]["completion_tokens"] < 40
    completions = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", http_client=client,
                                max_retries=0)
    chunks = list(completions.completions.create(model="tiny-gpt2", prompt="The sea", max_tokens=40, stream=True))
    assert chunks[-1].choices[0].finish_reason == "timeout"


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_stops_its_generation(slow_server: Callable[..., tuple[TestClient, list[int]]],
                                                        stream: bool) -> None:
    client, rows = slow_server()
    messages, steps = asyncio.run(_disconnecting(client.app, {"prompt": "The sea", "max_new_tokens": 40,
                                                              "temperature": 0, "stream": stream}, rows))
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    assert status == (200 if stream else 499)
    assert steps[0] == steps[1] < 30, "the generation went on after the client left"


async def _disconnecting(app: Any, body: dict[str, Any], rows: list[int]) -> tuple[list[dict[str, Any]], list[int]]:
    """Call the ASGI app directly; the client disconnects after the first body bytes or after 0.3 s. Returns
    the messages sent and the decode steps 0.2 s and 0.4 s after the app returned (the event loop still runs)."""
    sent: list[dict[str, Any]] = []
    started = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started.wait(), 0.3)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            started.set()

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/generate", "raw_path": b"/v1/generate",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("testserver", 80),
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")]}
    await asyncio.wait_for(app(scope, receive, send), 10)
    steps = []
    for _ in range(2):
        await asyncio.sleep(0.2)
        steps.append(len(rows))
    return sent, steps

