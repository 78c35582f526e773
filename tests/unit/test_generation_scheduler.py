"""Continuous batching without a model (`Scripted`): rows join and leave, prompts that arrive together are
prefilled in one call, cancel, time out, fill the queue, fail; and incremental detokenisation against whole-list
decoding."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from app.api.errors import headers_of
from app.core.scheduler import Scheduler
from app.core.ticket import Ticket
from app.errors import Overloaded
from app.metrics import BATCH_SIZE, TOKENS_GENERATED
from app.tasks.generation.sampling import SamplingParams
from app.tasks.generation.sequence import Chunk, Detokenizer, GenerationParams
from tests.scripted import Scripted

GREEDY = SamplingParams(temperature=0)
Make = Callable[..., Scheduler]


class Receiver:
    """A ``deliver`` callback that records what one ticket receives."""

    def __init__(self) -> None:
        self.items: list[Chunk | Exception] = []
        self.done = threading.Event()

    def __call__(self, item: Chunk | Exception) -> None:
        self.items.append(item)
        if isinstance(item, Exception) or item.finish_reason is not None:
            self.done.set()

    def final(self) -> Chunk:
        assert self.done.wait(10), "the generation did not end"
        last = self.items[-1]
        assert isinstance(last, Chunk)
        return last

    def text(self) -> str:
        self.final()
        return "".join(c.text for c in self.items if isinstance(c, Chunk))


def params(max_new_tokens: int, **extra: object) -> GenerationParams:
    return GenerationParams(max_new_tokens=max_new_tokens, sampling=GREEDY, **extra)  # type: ignore[arg-type]


@pytest.fixture
def make() -> Iterator[Make]:
    made: list[Scheduler] = []

    def factory(gen: Scripted, max_batch: int = 8, max_queue: int = 8, max_prefill_tokens: int = 2048) -> Scheduler:
        made.append(Scheduler(gen, "scripted", max_batch, max_queue, max_prefill_tokens))
        return made[-1]

    yield factory
    for scheduler in made:
        scheduler.close()
        scheduler.join(5)


def submit(scheduler: Scheduler, max_new_tokens: int, timeout: float = 10, prompt: tuple[int, ...] = (1,),
           streamed: bool = True, **extra: object) -> tuple[Ticket, Receiver]:
    receiver = Receiver()
    ticket = scheduler.submit(list(prompt), params(max_new_tokens, **extra), receiver, time.monotonic() + timeout,
                              streamed)
    return ticket, receiver


def test_rows_join_and_leave_mid_flight_with_their_own_text(make: Make) -> None:
    gen = Scripted([1, 2, 4, 1, 2, 4], context=200, delay=0.005)
    alone = "".join(c.text for c in gen.stream([1], params(60)))
    scheduler = make(gen)
    _, first = submit(scheduler, 60)
    while len(first.items) < 5:
        time.sleep(0.001)
    _, second = submit(scheduler, 3, prompt=(1, 1))
    assert second.final().completion_tokens == 3 and not first.done.is_set()
    assert first.text() == alone and first.final().finish_reason == "length"
    assert second.text() == "b c a"  # its own positions: script[1:4]
    assert 2 in gen.steps and gen.steps[0] == 1 and gen.steps[-1] == 1
    batched = [i for i, rows in enumerate(gen.steps) if rows == 2]
    assert batched == list(range(batched[0], batched[0] + 2))  # the short row left after its 3rd token


def test_prompts_that_arrive_together_are_prefilled_shortest_first_in_few_calls(make: Make) -> None:
    gen = Scripted([1, 2, 4] * 5, context=200)
    scheduler = make(gen, max_prefill_tokens=12)
    _, lone = submit(scheduler, 3, prompt=(1, 1))
    assert lone.text() == "b c a" and gen.prefills == [[2]]  # a lone prompt: one call of one
    lengths = [5, 1, 3, 13, 2, 3]
    with scheduler._wake:  # the loop takes none of them before all of them wait
        receivers = [submit(scheduler, 4 - i % 2, prompt=(1,) * n)[1] for i, n in enumerate(lengths)]
    texts = [receiver.text() for receiver in receivers]
    # shortest first; 4 prompts x 3 tokens fill the 12 tokens of a call, 5 tokens make the next, 13 go alone
    assert gen.prefills == [[2], [1, 2, 3, 3], [5], [13]]
    assert texts == ["b c a b", "a b c", "c a b c", "a b c", "b c a b", "c a b"]  # each from its own position
    assert max(gen.steps) == 6  # and all decoded together


def test_non_streamed_gets_one_chunk_with_all_the_text(make: Make) -> None:
    gen = Scripted([1, 2, 3, 4], context=64)
    scheduler = make(gen)
    _, receiver = submit(scheduler, 10, streamed=False, stop=("stop",))
    final = receiver.final()
    assert len(receiver.items) == 1
    assert (final.text, final.finish_reason, final.completion_tokens) == ("a b ", "stop", 3)


def test_cancel_stops_the_row_at_the_next_step(make: Make) -> None:
    gen = Scripted([1], context=2000, delay=0.01)
    scheduler = make(gen)
    ticket, receiver = submit(scheduler, 1000)
    while len(receiver.items) < 3:
        time.sleep(0.001)
    ticket.cancel()
    time.sleep(0.1)
    steps = len(gen.steps)
    time.sleep(0.1)
    assert len(gen.steps) == steps < 100, "the cancelled row still decodes"
    assert not receiver.done.is_set()  # a cancelled ticket gets nothing more
    _, other = submit(scheduler, 2)
    assert other.final().completion_tokens == 2


def test_timeout_ends_running_and_waiting_rows(make: Make) -> None:
    gen = Scripted([1], context=2000, delay=0.01)
    scheduler = make(gen, max_batch=1)
    _, running = submit(scheduler, 1000, timeout=0.15)
    _, waiting = submit(scheduler, 5, timeout=0.05)
    late = waiting.final()
    assert (late.finish_reason, late.completion_tokens) == ("timeout", 0)
    final = running.final()
    assert final.finish_reason == "timeout" and 1 <= final.completion_tokens < 100


def test_a_full_queue_is_refused_with_retry_after(make: Make) -> None:
    gen = Scripted([1], context=2000, delay=0.01)
    scheduler = make(gen, max_batch=1, max_queue=1)
    first, _ = submit(scheduler, 1000)
    second, _ = submit(scheduler, 1000)
    with pytest.raises(Overloaded) as refused:
        submit(scheduler, 5)
    assert headers_of(refused.value) == {"Retry-After": "1"}
    first.cancel()
    second.cancel()
    deadline = time.monotonic() + 5
    while True:  # both cancelled tickets free their places within a step
        try:
            _, receiver = submit(scheduler, 2)
            break
        except Overloaded:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert receiver.final().completion_tokens == 2


def test_a_failing_step_fails_its_rows_and_the_loop_goes_on(make: Make) -> None:
    gen = Scripted([1], context=64)
    scheduler = make(gen)

    def broken(tokens: object, cache: object) -> object:
        raise RuntimeError("boom")

    gen._decode = broken  # type: ignore[method-assign]
    _, receiver = submit(scheduler, 5)
    assert receiver.done.wait(5) and isinstance(receiver.items[-1], RuntimeError)
    del gen._decode
    _, after = submit(scheduler, 3)
    assert after.final().completion_tokens == 3


def test_metrics_count_tokens_and_batch_sizes(make: Make) -> None:
    gen = Scripted([1], context=64, delay=0.002)
    scheduler = make(gen)
    tokens, batches = TOKENS_GENERATED.labels("scripted"), BATCH_SIZE.labels("scripted")
    before, observed = tokens._value.get(), sum(b.get() for b in batches._buckets)
    receivers = [submit(scheduler, 6)[1] for _ in range(3)]
    assert [r.final().completion_tokens for r in receivers] == [6, 6, 6]
    assert tokens._value.get() - before == 18
    assert sum(b.get() for b in batches._buckets) - observed == len(gen.steps)


def test_incremental_detokenisation_matches_decoding_the_whole_list() -> None:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(["café naïve — über 日本語 whale", "the sea was calm 🐳 and grey"],
                                  trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel
                                                      .alphabet()))
    rng = np.random.default_rng(0)
    for _ in range(20):
        ids = rng.integers(0, tokenizer.get_vocab_size(), 30).tolist()
        detok = Detokenizer(tokenizer)
        pieces = [detok.add(token) for token in ids]
        assert "".join(pieces) + detok.rest() == tokenizer.decode(ids)
    text = "über 日本語 🐳"
    detok = Detokenizer(tokenizer)
    assert "".join(detok.add(t) for t in tokenizer.encode(text).ids) == text and detok.rest() == ""
