"""The inference runner: work runs in a thread, at most max_concurrency at once, bounded queue -> 429."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import anyio
import pytest

from app.core.runner import Runner
from app.errors import Overloaded
from app.tasks.classification import Prediction


def test_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def classify(texts: Sequence[str]) -> list[Prediction]:
        seen.append(threading.get_ident())
        return [Prediction(label="positive", score=1.0, scores={"positive": 1.0}, truncated=False)
                for _ in texts]

    async def main() -> list[Prediction]:
        return await Runner(1, 1).submit("m", ["a", "b"], classify)

    assert len(anyio.run(main)) == 2
    assert seen and seen[0] != loop_thread


def test_full_queue_is_rejected() -> None:
    release = threading.Event()

    def slow(texts: Sequence[str]) -> list[Prediction]:
        release.wait(10)
        return []

    async def main() -> None:
        runner = Runner(max_concurrency=1, max_queue=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.submit, "m", ["busy"], slow)
            await anyio.sleep(0.05)
            tg.start_soon(runner.submit, "m", ["queued"], slow)
            await anyio.sleep(0.05)
            assert runner.waiting == 1
            with pytest.raises(Overloaded, match="already wait"):
                await runner.submit("m", ["rejected"], slow)
            release.set()

    anyio.run(main)
