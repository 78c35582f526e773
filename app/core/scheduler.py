"""The generation loop: continuous (step-level) batching, one thread per generator decodes all its sequences
together, one token each per step.

Every iteration admits waiting requests (up to ``max_batch`` active): the prompts that arrived since the last
iteration are prefilled shortest first, those of similar length together in one left-padded model call of at
most ``max_prefill_tokens`` (a lone prompt is one call, as alone); each one's first token is sent as its call
returns and the rows join the batch; then it runs one batched decode step over the shared `KVCache`. Rows that
end (eos, stop string, budget), time out or are cancelled leave at once; new ones join at the next iteration.
Text goes to each request through its `Ticket`'s ``deliver`` callback, called on the scheduler thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from app.core.admission import Admission, overloaded
from app.core.ticket import Deliver, Ticket
from app.errors import NotReady
from app.metrics import BATCH_SIZE, GENERATION_STREAMS, PREFILL_BATCH_SIZE, QUEUE_DEPTH, QUEUE_WAIT, TOKENS_GENERATED
from app.tasks.base import Model
from app.tasks.generation.cache import KVCache
from app.tasks.generation.generator import Generator
from app.tasks.generation.sequence import Chunk, GenerationParams

log = logging.getLogger(__name__)

class Scheduler:
    """The batching loop of one generator object (model ``name``); its thread starts on the first request."""

    def __init__(self, generator: Generator, name: str, max_batch: int, max_queue: int,
                 max_prefill_tokens: int) -> None:
        self.generator, self.name = generator, name
        self.max_batch, self.max_queue, self.max_prefill_tokens = max_batch, max_queue, max_prefill_tokens
        self._wake = threading.Condition()
        self._waiting: deque[Ticket] = deque()
        self._admitted = 0
        """Tickets taken from the queue and not ended yet (guarded by ``_wake``)."""
        self._active: list[Ticket] = []
        """The rows of ``_cache``, in order (scheduler thread only)."""
        self._cache: KVCache | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._queue_depth = QUEUE_DEPTH.labels(model=name, loop="stream")
        self._queue_wait = QUEUE_WAIT.labels(model=name, loop="stream")
        self._streams = GENERATION_STREAMS.labels(model=name)
        self._batch_size = BATCH_SIZE.labels(name)
        self._prefill_size = PREFILL_BATCH_SIZE.labels(name)
        self._tokens = TOKENS_GENERATED.labels(name)

    def submit(self, prompt_ids: Sequence[int], params: GenerationParams, deliver: Deliver, deadline: float,
               streamed: bool = True) -> Ticket:
        """Queue a generation; `Overloaded` at once when ``max_batch`` run and ``max_queue`` wait already."""
        ticket = Ticket(self.generator.sequence(prompt_ids, params), deliver, deadline, streamed)
        with self._wake:
            if self._closing:
                raise NotReady(f"model {self.name!r} is shutting down")
            if len(self._waiting) + self._admitted >= self.max_batch + self.max_queue:
                raise overloaded(len(self._waiting), "generations", f"for model {self.name!r}")
            self._waiting.append(ticket)
            self._queue_depth.set(len(self._waiting))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"generation-{self.name}", daemon=True)
                self._thread.start()
            self._wake.notify()
        return ticket

    def close(self) -> None:
        """Refuse new requests; the thread finishes the accepted ones, then ends."""
        with self._wake:
            self._closing = True
            self._wake.notify()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._waiting or self._active or self._closing):
                    self._wake.wait()
                if not (self._waiting or self._active):
                    return
                expired = self._expire_waiting()
                incoming = [self._waiting.popleft()
                            for _ in range(min(len(self._waiting), self.max_batch - len(self._active)))]
                self._admitted += len(incoming)
                self._queue_depth.set(len(self._waiting))
            for ticket in expired:
                ticket.end()
            try:
                self._admit(incoming)
                self._retire()
                self._streams.set(len(self._active))
                if self._active:
                    self._step()
                    self._retire()
                self._streams.set(len(self._active))
            except Exception as exc:
                log.exception("generation with %s failed", self.name)
                for ticket in {*incoming, *self._active}:
                    if not ticket.ended:
                        self._end(ticket, exc)
                self._active, self._cache = [], None
                self._streams.set(0)

    def _expire_waiting(self) -> list[Ticket]:
        """Take cancelled and timed-out tickets out of the queue (under the lock); returns the timed-out ones."""
        now = time.monotonic()
        gone = [t for t in self._waiting if t.cancelled or now >= t.deadline]
        for ticket in gone:
            self._waiting.remove(ticket)
            ticket.sequence.finish("timeout")
        return [t for t in gone if not t.cancelled]

    def _admit(self, incoming: list[Ticket]) -> None:
        """Prefill the new tickets, shortest prompt first, in as few calls as ``max_prefill_tokens`` allows
        (prompts times the longest of them; a longer prompt goes alone): prompts of similar lengths share a call,
        so padding stays small, and short prompts get their first token first."""
        ready: list[Ticket] = []
        for ticket in incoming:
            if time.monotonic() >= ticket.deadline:
                ticket.sequence.finish("timeout")
            if ticket.cancelled or ticket.sequence.finish_reason is not None:
                self._end(ticket)
            else:
                ready.append(ticket)
        group: list[Ticket] = []
        for ticket in sorted(ready, key=lambda t: len(t.sequence.history)):
            if group and (len(group) + 1) * len(ticket.sequence.history) > self.max_prefill_tokens:
                self._prefill(group)
                group = []
            group.append(ticket)
        if group:
            self._prefill(group)

    def _prefill(self, tickets: list[Ticket]) -> None:
        """One model call for the prompts of ``tickets``: each gets its first token and its row joins the batch
        (`_retire` takes out the ones that ended already)."""
        now = time.monotonic()
        for ticket in tickets:
            self._queue_wait.observe(now - ticket.arrived)
        try:
            texts, cache = self.generator.prefill([ticket.sequence for ticket in tickets])
        except Exception as exc:
            log.exception("prefill with %s failed", self.name)
            for ticket in tickets:
                self._end(ticket, exc)
            return
        self._prefill_size.observe(len(tickets))
        self._tokens.inc(len(tickets))
        for ticket, text in zip(tickets, texts, strict=True):
            ticket.send(text)
        if self._cache is None:
            self._cache = cache
        else:
            self._cache.join(cache)
        self._active += tickets

    def _step(self) -> None:
        assert self._cache is not None
        texts = self.generator.decode([t.sequence for t in self._active], self._cache)
        self._batch_size.observe(len(texts))
        self._tokens.inc(len(texts))
        for ticket, text in zip(self._active, texts, strict=True):
            ticket.send(text)

    def _retire(self) -> None:
        """Rows that ended, were cancelled or ran out of time leave the batch (the others keep their order)."""
        now = time.monotonic()
        keep: list[int] = []
        for row, ticket in enumerate(self._active):
            if now >= ticket.deadline:
                ticket.sequence.finish("timeout")
            if ticket.cancelled or ticket.sequence.finish_reason is not None:
                self._end(ticket)
            else:
                keep.append(row)
        if len(keep) == len(self._active):
            return
        self._active = [self._active[row] for row in keep]
        if not keep:
            self._cache = None
        elif self._cache is not None:
            self._cache.keep(keep)

    def _end(self, ticket: Ticket, error: Exception | None = None) -> None:
        ticket.end(error)
        with self._wake:
            self._admitted -= 1


@dataclass(frozen=True)
class GenerationJob:
    """What a generation request asks of the loop."""

    prompt_ids: Sequence[int]
    params: GenerationParams
    timeout_s: float
    streamed: bool


class Schedulers(Admission):
    """One `Scheduler` per generator object, made on first use (event loop only). A reloaded model is a new
    object and gets a new scheduler; the old one finishes its requests and stops."""

    def __init__(self, max_batch: int, max_queue: int, max_prefill_tokens: int) -> None:
        self.max_batch, self.max_queue, self.max_prefill_tokens = max_batch, max_queue, max_prefill_tokens
        self._by_model: dict[Generator, Scheduler] = {}

    @property
    def waiting(self) -> int:
        return sum(len(scheduler._waiting) for scheduler in self._by_model.values())

    def submit(self, name: str, model: Model, work: GenerationJob) -> AsyncIterator[Chunk]:
        """Queue the generation now (`Overloaded` here, before any response has started) and return its chunks
        on the event loop; the last one has ``finish_reason``. Closing the iterator early (a disconnect, a
        cancelled task) cancels the generation."""
        if not isinstance(model, Generator):
            raise TypeError(f"model {name!r} is not a generator")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | Exception] = asyncio.Queue()

        def deliver(item: Chunk | Exception) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        ticket = self.get(name, model).submit(work.prompt_ids, work.params, deliver,
                                              time.monotonic() + work.timeout_s, work.streamed)
        return _chunks(queue, ticket)

    def get(self, name: str, generator: Generator) -> Scheduler:
        scheduler = self._by_model.get(generator)
        if scheduler is None:
            for model, old in list(self._by_model.items()):
                if old.name == name:
                    old.close()
                    del self._by_model[model]
            scheduler = self._by_model[generator] = Scheduler(generator, name, self.max_batch, self.max_queue,
                                                              self.max_prefill_tokens)
        return scheduler

    async def close(self, timeout_s: float) -> None:
        """Stop every scheduler, waiting up to ``timeout_s`` seconds in all for their generations to finish."""
        for scheduler in self._by_model.values():
            scheduler.close()
        deadline = time.monotonic() + timeout_s
        for scheduler in self._by_model.values():
            await asyncio.to_thread(scheduler.join, max(0.0, deadline - time.monotonic()))


async def _chunks(queue: asyncio.Queue[Chunk | Exception], ticket: Ticket) -> AsyncIterator[Chunk]:
    try:
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            yield item
            if item.finish_reason is not None:
                return
    finally:
        ticket.cancel()
