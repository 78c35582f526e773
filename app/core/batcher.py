"""The batching loop: rows that arrive within a short time share one model call (any `BatchModel`: the windows
of texts to classify, texts to embed).

Each request (1..n rows) joins the lane of the model *object* it was routed to (a hot-reloaded model
gets a new lane, never a batch mixed with its predecessor). The oldest lane waits until ``max_batch_size``
rows are waiting or its oldest request has waited ``wait_s``; then, once one of the runner's inference slots
is free, a round is taken one row per request in turn (a request with many rows cannot hold back a
single-row request for more than one round): at most ``max_batch_size`` rows, and no more than its share
when other slots are free too, so that waiting rows spread over every idle slot (``APP_MAX_CONCURRENCY``
rounds run at once, each with ``APP_THREADS`` threads). A round is split into calls of similar length
(`length_groups`, with the model's `BatchModel.call_overhead`) run in a worker thread, shortest call first;
each result goes back to its request in input order.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, cast

import anyio
import anyio.to_thread

from app.core.admission import Admission, overloaded
from app.errors import NotReady, TimedOut
from app.metrics import BATCH_SIZE, QUEUE_DEPTH, QUEUE_WAIT
from app.settings import Settings
from app.tasks.base import BatchModel, Model


def length_groups(lengths: Sequence[int], max_size: int, overhead: int) -> list[list[int]]:
    """Indices of ``lengths`` cut into calls of at most ``max_size``, shortest call first.

    The calls are runs of the length order that minimise the padded work, the sum over calls of
    ``overhead + size * longest`` (exact, by dynamic programming over the sorted lengths).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = [0] * (len(order) + 1)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        best[end], cut[end] = min((best[start] + overhead + (end - start) * longest, start)
                                  for start in range(max(0, end - max_size), end))
    groups: list[list[int]] = []
    end = len(order)
    while end:
        groups.append(order[cut[end]:end])
        end = cut[end]
    return groups[::-1]


@dataclass(eq=False)
class _Request:
    rows: Sequence[Any]
    lane: _Lane
    future: asyncio.Future[list[Any]]
    arrived: float = field(default_factory=time.monotonic)
    scheduled: int = 0
    answered: int = 0
    results: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class _Lane:
    """The requests of one model object with rows not yet handed to a model call, oldest first."""

    name: str
    model: BatchModel
    requests: deque[_Request] = field(default_factory=deque)

    def waiting_rows(self) -> int:
        return sum(len(r.rows) - r.scheduled for r in self.requests)


class Batcher(Admission):
    """Groups concurrent ``submit`` calls per model into batched ``predict`` calls on a worker thread.

    Model calls hold a slot of ``limiter`` (the `Runner`'s), so batches and single calls together never run
    more than ``APP_MAX_CONCURRENCY`` inferences at once.
    """

    def __init__(self, limiter: anyio.CapacityLimiter, *, max_batch_size: int, wait_s: float, max_queue: int,
                 timeout_s: float) -> None:
        self.limiter = limiter
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._lanes: dict[BatchModel, _Lane] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rounds: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings, limiter: anyio.CapacityLimiter) -> Batcher:
        return cls(limiter, max_batch_size=settings.max_batch_size, wait_s=settings.batch_wait_ms / 1000,
                   max_queue=settings.max_queue, timeout_s=settings.request_timeout_s)

    @property
    def waiting(self) -> int:
        """Requests with rows not yet handed to a model call."""
        return sum(len(lane.requests) for lane in self._lanes.values())

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="batcher")

    async def close(self, timeout_s: float = 0) -> None:
        """Stop scheduling; requests still waiting, and those of rounds in flight, fail with 503 at once."""
        for task in [self._task, *self._rounds]:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        for lane in list(self._lanes.values()):
            for request in list(lane.requests):
                self._fail(request, NotReady("the service is shutting down"))

    async def submit(self, name: str, model: Model, work: Sequence[Any]) -> list[Any]:
        """``model.predict`` of each row of ``work``, in input order; `Overloaded` when ``max_queue`` requests
        already wait, `TimedOut` when no answer came within ``timeout_s``."""
        rows, batched = work, cast(BatchModel, model)
        if not rows:
            return []
        waiting = self.waiting
        if waiting >= self.max_queue and (waiting or self._rounds):
            raise overloaded(waiting, "requests", "for inference")
        lane = self._lanes.get(batched)
        if lane is None:
            lane = self._lanes[batched] = _Lane(name, batched)
        request = _Request(rows, lane, asyncio.get_running_loop().create_future(), results=[None] * len(rows))
        lane.requests.append(request)
        self._report(lane)
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), self.timeout_s)
        except TimeoutError:
            raise TimedOut(f"no result within {self.timeout_s:g}s (APP_REQUEST_TIMEOUT_S)") from None
        finally:
            request.future.cancel()  # a no-op once answered; else late results are dropped
            self._forget(request)

    async def _serve(self) -> None:
        while True:
            if not self._lanes:
                self._wake.clear()
                await self._wake.wait()
                continue
            if await self._ready_lane() is None:
                continue
            slot = object()
            await self.limiter.acquire_on_behalf_of(slot)
            lane = self._oldest_lane()
            if lane is None:  # its requests timed out or were cancelled while every slot was busy
                self.limiter.release_on_behalf_of(slot)
                continue
            share = math.ceil(lane.waiting_rows() / (1 + int(self.limiter.available_tokens)))
            items = self._take_round(lane, min(self.max_batch_size, share))
            task = asyncio.get_running_loop().create_task(self._run_round(lane, items, slot), name="batch")
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)

    def _oldest_lane(self) -> _Lane | None:
        if not self._lanes:
            return None
        return min(self._lanes.values(), key=lambda candidate: candidate.requests[0].arrived)

    async def _ready_lane(self) -> _Lane | None:
        """The lane of the oldest request, once it has a full batch or its oldest request waited ``wait_s``."""
        while (lane := self._oldest_lane()) is not None:
            delay = lane.requests[0].arrived + self.wait_s - time.monotonic()
            if delay <= 0 or lane.waiting_rows() >= self.max_batch_size:
                return lane
            self._wake.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        return None

    def _take_round(self, lane: _Lane, size: int) -> list[tuple[_Request, int]]:
        """Up to ``size`` rows, one per request in turn, oldest request first."""
        items: list[tuple[_Request, int]] = []
        while lane.requests and len(items) < size:
            for request in list(lane.requests):
                if len(items) == size:
                    break
                if request.scheduled == 0:
                    QUEUE_WAIT.labels(model=lane.name, loop="batch").observe(time.monotonic() - request.arrived)
                items.append((request, request.scheduled))
                request.scheduled += 1
                if request.scheduled == len(request.rows):
                    lane.requests.remove(request)
        self._report(lane)
        return items

    async def _run_round(self, lane: _Lane, items: list[tuple[_Request, int]], slot: object) -> None:
        """The calls of one round, holding the inference ``slot`` taken for it."""
        try:
            lengths = [len(r.rows[i]) for r, i in items]
            for group in length_groups(lengths, self.max_batch_size, lane.model.call_overhead):
                await self._run_call(lane, [items[k] for k in group if not items[k][0].future.done()])
        except asyncio.CancelledError:  # stop(): its requests get 503, not a wait until their timeout
            for request, _ in items:
                self._fail(request, NotReady("the service is shutting down"))
            raise
        finally:
            self.limiter.release_on_behalf_of(slot)

    async def _run_call(self, lane: _Lane, batch: list[tuple[_Request, int]]) -> None:
        if not batch:
            return
        BATCH_SIZE.labels(model=lane.name).observe(len(batch))
        try:
            results = await anyio.to_thread.run_sync(lane.model.predict, [r.rows[i] for r, i in batch])
        except Exception as exc:
            for request, _ in batch:
                self._fail(request, exc)
            return
        for (request, index), result in zip(batch, results, strict=True):
            request.results[index] = result
            request.answered += 1
            if request.answered == len(request.rows) and not request.future.done():
                request.future.set_result([p for p in request.results if p is not None])

    def _fail(self, request: _Request, exc: BaseException) -> None:
        if not request.future.done():
            request.future.set_exception(exc)
        self._forget(request)

    def _forget(self, request: _Request) -> None:
        """Drop what is left of a request (answered, failed, timed out or cancelled) from its lane."""
        lane = request.lane
        if request in lane.requests:
            lane.requests.remove(request)
            self._report(lane)

    def _report(self, lane: _Lane) -> None:
        QUEUE_DEPTH.labels(model=lane.name, loop="batch").set(lane.waiting_rows())
        if not lane.requests and self._lanes.get(lane.model) is lane:
            del self._lanes[lane.model]
