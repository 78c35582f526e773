"""The classification batcher: grouping, limits, routing, length groups, fairness, 429, 504, failures."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import pytest
from prometheus_client import REGISTRY

from app.api.errors import headers_of
from app.core.batcher import Batcher, length_groups
from app.errors import NotReady, Overloaded, TimedOut
from app.tasks.classification import Prediction


class Echo:
    """A fake backend: each text's label is the text itself; records every call; ``gate`` holds calls back."""

    call_overhead = 64

    def __init__(self, gate: threading.Event | None = None, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.called = threading.Event()
        self.gate = gate
        self.fail_on = fail_on

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls.append(list(texts))
        self.called.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_on in texts:
            raise RuntimeError(f"cannot classify {self.fail_on!r}")
        return [Prediction(label=t, score=1.0, scores={t: 1.0}, truncated=False) for t in texts]


@asynccontextmanager
async def batcher(**overrides: Any) -> AsyncIterator[Batcher]:
    limiter = overrides.pop("limiter", None) or anyio.CapacityLimiter(1)
    options: dict[str, Any] = {"max_batch_size": 32, "wait_s": 0.05, "max_queue": 64, "timeout_s": 10.0,
                               **overrides}
    running = Batcher(limiter, **options)
    running.start()
    try:
        yield running
    finally:
        await running.close()


async def classify_all(b: Batcher, backend: Any, requests: list[list[str]], name: str = "m") -> list[list[str]]:
    """Send every request at once; the labels each caller got back."""
    answers: list[list[str]] = [[] for _ in requests]

    async def one(index: int) -> None:
        answers[index] = [p.label for p in await b.submit(name, backend, requests[index])]

    async with anyio.create_task_group() as tg:
        for index in range(len(requests)):
            tg.start_soon(one, index)
    return answers


async def wait_called(backend: Echo) -> None:
    assert await anyio.to_thread.run_sync(backend.called.wait, 10)


def test_requests_within_the_window_share_one_call() -> None:
    async def main() -> None:
        backend = Echo()
        async with batcher() as b:
            requests = [["a"], ["b"], ["c"], ["d"], ["e"]]
            assert await classify_all(b, backend, requests) == requests
        assert backend.calls == [["a", "b", "c", "d", "e"]]

    anyio.run(main)


def test_calls_respect_max_batch_size() -> None:
    async def main() -> None:
        backend = Echo()
        async with batcher(max_batch_size=4) as b:
            requests = [[f"t{i}"] for i in range(10)] + [[f"u{i}" for i in range(9)]]
            assert await classify_all(b, backend, requests) == requests
        assert max(len(call) for call in backend.calls) <= 4
        assert sum(len(call) for call in backend.calls) == 19

    anyio.run(main)


def test_each_caller_gets_its_own_results_in_input_order() -> None:
    async def main() -> None:
        backend = Echo()
        requests = [["x" * n for n in (30, 2, 17)], ["short", "a much longer text than the others"],
                    ["y" * n for n in range(12, 0, -1)], ["solo"]]
        async with batcher(max_batch_size=8) as b:
            assert await classify_all(b, backend, requests) == requests

    anyio.run(main)


def test_length_groups_cut_padding_and_run_shortest_first() -> None:
    assert length_groups([5, 100, 6, 98, 7], max_size=8, overhead=10) == [[0, 2, 4], [3, 1]]
    assert length_groups([5, 100, 6, 98, 7], max_size=8, overhead=1000) == [[0, 2, 4, 3, 1]]
    assert length_groups([3] * 10, max_size=4, overhead=0) in ([[0, 1], [2, 3, 4, 5], [6, 7, 8, 9]],
                                                              [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]],
                                                              [[0, 1, 2, 3], [4, 5], [6, 7, 8, 9]])
    assert all(len(group) <= 4 for group in length_groups(list(range(50)), max_size=4, overhead=64))
    assert length_groups([], max_size=4, overhead=64) == []


def test_batcher_groups_texts_of_similar_length() -> None:
    async def main() -> None:
        backend = Echo()
        short, long = ["ok", "no", "hi"], ["w" * 400, "v" * 410]
        async with batcher() as b:
            await classify_all(b, backend, [[long[0]], [short[0]], [long[1]], [short[1]], [short[2]]])
        assert backend.calls == [short, long]

    anyio.run(main)


def test_a_big_request_does_not_hold_back_a_small_one() -> None:
    async def main() -> None:
        gate = threading.Event()
        backend = Echo(gate)
        big = [f"b{i:02d}" for i in range(40)]
        async with batcher(max_batch_size=4, wait_s=0) as b, anyio.create_task_group() as tg:
            tg.start_soon(b.submit, "m", backend, big)
            await wait_called(backend)  # the first round of the big request runs (and is held)
            small: list[Prediction] = []

            async def send_small() -> None:
                small.extend(await b.submit("m", backend, ["s00"]))

            tg.start_soon(send_small)
            await anyio.sleep(0.05)
            gate.set()
        assert [p.label for p in small] == ["s00"]
        assert "s00" in backend.calls[1], backend.calls[:3]
        assert len(backend.calls) == 11

    anyio.run(main)


def test_full_queue_is_rejected_at_once_with_retry_after() -> None:
    async def main() -> None:
        gate = threading.Event()
        backend = Echo(gate)
        async with batcher(max_queue=2, wait_s=0) as b, anyio.create_task_group() as tg:
            tg.start_soon(b.submit, "m", backend, ["running"])
            await wait_called(backend)
            tg.start_soon(b.submit, "m", backend, ["queued 1"])
            tg.start_soon(b.submit, "m", backend, ["queued 2"])
            await anyio.sleep(0.05)
            assert b.waiting == 2
            with pytest.raises(Overloaded, match="2 requests already wait") as refused:
                await b.submit("m", backend, ["refused"])
            assert headers_of(refused.value) == {"Retry-After": "1"}
            gate.set()
        assert ["refused"] not in backend.calls

    anyio.run(main)


def test_a_request_still_waiting_at_the_timeout_gets_504_and_leaves_the_queue() -> None:
    async def main() -> None:
        limiter = anyio.CapacityLimiter(1)
        backend = Echo()
        async with batcher(limiter=limiter, timeout_s=0.2) as b:
            async with limiter:  # another inference (e.g. attention) holds the only slot
                with pytest.raises(TimedOut, match=r"within 0\.2s"):
                    await b.submit("m", backend, ["too late"])
                assert b.waiting == 0
            assert [p.label for p in await b.submit("m", backend, ["in time"])] == ["in time"]
        assert backend.calls == [["in time"]]

    anyio.run(main)


def test_a_failing_batch_fails_only_its_callers() -> None:
    async def main() -> None:
        backend, other = Echo(fail_on="boom"), Echo()
        outcomes: dict[str, str] = {}

        async def send(target: Echo, text: str) -> None:
            try:
                outcomes[text] = (await b.submit("m", target, [text]))[0].label
            except RuntimeError as exc:
                outcomes[text] = str(exc)

        async with batcher(max_batch_size=2) as b, anyio.create_task_group() as tg:
            for target, text in [(backend, "boom"), (backend, "same call"), (other, "other model"),
                                 (backend, "third"), (backend, "later")]:
                tg.start_soon(send, target, text)
        assert outcomes == {"boom": "cannot classify 'boom'", "same call": "cannot classify 'boom'",
                            "third": "third", "later": "later", "other model": "other model"}
        assert other.calls == [["other model"]]

    anyio.run(main)


def test_batches_are_keyed_by_backend_object_and_recorded() -> None:
    def calls_of(model: str) -> float:
        return REGISTRY.get_sample_value("app_batch_size_count", {"model": model}) or 0.0

    async def main() -> None:
        old, new = Echo(), Echo()  # e.g. a model's engine before and after a hot reload
        before = calls_of("keyed")
        async with batcher() as b, anyio.create_task_group() as tg:
            for backend, text in [(old, "o1"), (new, "n1"), (old, "o2"), (new, "n2"), (old, "o3")]:
                tg.start_soon(b.submit, "keyed", backend, [text])
        assert old.calls == [["o1", "o2", "o3"]] and new.calls == [["n1", "n2"]]
        assert calls_of("keyed") - before == 2
        assert REGISTRY.get_sample_value("app_queue_depth", {"model": "keyed", "loop": "batch"}) == 0

    anyio.run(main)


def test_idle_slots_share_the_waiting_texts_and_run_together() -> None:
    async def main() -> None:
        gate = threading.Event()
        backend = Echo(gate)
        async with batcher(limiter=anyio.CapacityLimiter(2), wait_s=0.05) as b, anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(b.submit, "m", backend, [f"t{i}"])
            with anyio.fail_after(5):  # the gate holds every call (up to 10 s): both must be in flight at once
                while len(backend.calls) < 2:
                    await anyio.sleep(0.01)
            gate.set()
        assert sorted(len(call) for call in backend.calls) == [4, 4], backend.calls

    anyio.run(main)


def test_no_slot_is_held_while_a_batch_waits_for_company() -> None:
    async def main() -> None:
        limiter = anyio.CapacityLimiter(1)
        backend = Echo()
        async with batcher(limiter=limiter, wait_s=0.3) as b, anyio.create_task_group() as tg:
            tg.start_soon(b.submit, "m", backend, ["alone"])
            await anyio.sleep(0.1)
            assert limiter.available_tokens == 1 and backend.calls == []  # an attention request could run now
        assert backend.calls == [["alone"]] and limiter.available_tokens == 1

    anyio.run(main)


def test_stop_fails_the_requests_of_a_round_in_flight_with_503() -> None:
    async def main() -> None:
        gate = threading.Event()
        backend = Echo(gate)
        b = Batcher(anyio.CapacityLimiter(1), max_batch_size=32, wait_s=0, max_queue=64, timeout_s=10.0)
        b.start()
        outcome: list[BaseException] = []

        async def send() -> None:
            try:
                await b.submit("m", backend, ["in flight"])
            except NotReady as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            await wait_called(backend)
            tg.start_soon(b.close)
            await anyio.sleep(0.05)
            gate.set()
        assert [str(e) for e in outcome] == ["the service is shutting down"]

    anyio.run(main)
