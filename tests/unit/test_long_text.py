"""Reading long texts: the window arithmetic of head+tail and chunks, the splitter on a real tokenizer, padding,
and the length-weighted mean of a text's windows."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from app.tasks.classification.long_text import (
    HEAD_SHARE,
    OVERLAP_SHARE,
    Splitter,
    average,
    chunk_spans,
    head_tail_spans,
    pad,
)
from app.tasks.text import TextEncoder
from contract import load_schema, open_artifact

ROOM = 30


@pytest.mark.parametrize("count", [0, 1, ROOM - 1, ROOM])
def test_head_tail_reads_a_text_that_fits_whole(count: int) -> None:
    assert head_tail_spans(count, ROOM) == [(0, count)]


@pytest.mark.parametrize(("count", "head_share", "expected"), [
    (ROOM + 1, 0.25, [(0, 8), (9, 31)]),  # round(7.5) = 8 head tokens, 22 tail tokens: only token 8 is dropped
    (100, 0.25, [(0, 8), (78, 100)]),
    (100, 0.0, [(0, 0), (70, 100)]),  # all tail
    (100, 1.0, [(0, 30), (100, 100)]),  # all head: truncate
    (100, 0.5, [(0, 15), (85, 100)]),
])
def test_head_tail_keeps_the_first_and_last_tokens_of_a_longer_text(count: int, head_share: float,
                                                                    expected: list[tuple[int, int]]) -> None:
    spans = head_tail_spans(count, ROOM, head_share)
    assert spans == expected
    assert sum(end - start for start, end in spans) == ROOM


@pytest.mark.parametrize("count", [0, 1, ROOM - 1, ROOM])
def test_chunks_of_a_text_that_fits_are_one_window(count: int) -> None:
    assert chunk_spans(count, ROOM, overlap=7) == [(0, count)]


def test_one_token_over_the_room_makes_a_second_window() -> None:
    assert chunk_spans(ROOM + 1, ROOM, overlap=7) == [(0, 30), (23, 31)]


@pytest.mark.parametrize("overlap", [0, 1, 7, 15, ROOM - 1])
@pytest.mark.parametrize("count", [31, 53, 54, 99, 100, 1000])
def test_chunks_cover_the_text_with_the_stride_and_overlap(count: int, overlap: int) -> None:
    spans = chunk_spans(count, ROOM, overlap)
    step = ROOM - overlap
    assert len(spans) == 1 + math.ceil((count - ROOM) / step)
    assert spans[0][0] == 0 and spans[-1][1] == count
    assert all(0 < end - start <= ROOM for start, end in spans)
    assert [start for start, _ in spans] == list(range(0, step * len(spans), step))
    for (_, end), (start, next_end) in pairwise(spans):
        assert end - start == overlap
        assert next_end > end  # every window reads a token the one before did not


def test_chunks_that_fit_exactly_are_all_full() -> None:
    assert chunk_spans(99, ROOM, overlap=7) == [(0, 30), (23, 53), (46, 76), (69, 99)]
    assert chunk_spans(90, ROOM, overlap=0) == [(0, 30), (30, 60), (60, 90)]


@pytest.mark.parametrize(("room", "overlap"), [(30, 30), (30, -1), (0, 0)])
def test_an_overlap_that_leaves_no_stride_is_refused(room: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        chunk_spans(100, room, overlap)


@pytest.fixture(scope="module")
def splitter(tiny_artifact: Path) -> Splitter:
    artifact = open_artifact(tiny_artifact, load_schema())
    return Splitter(artifact.hf_dir, artifact.max_length)


def test_the_splitter_frames_windows_with_the_special_tokens(splitter: Splitter) -> None:
    vocab = splitter.tokenizer.get_vocab()
    assert (splitter.prefix, splitter.suffix) == ([vocab["[CLS]"]], [vocab["[SEP]"]])
    assert splitter.room == 32 - 2
    assert splitter.overlap == int(30 * OVERLAP_SHARE) == 7


def test_truncate_reads_what_the_truncating_encoder_reads(tiny_artifact: Path, splitter: Splitter) -> None:
    artifact = open_artifact(tiny_artifact, load_schema())
    texts = ["good", "the movie was very good . " * 10, "good " * 30]
    batch = TextEncoder(artifact.hf_dir, artifact.max_length).encode(texts)
    splits = splitter.split(texts, "truncate")
    for row, split in enumerate(splits):
        (window,) = split.windows
        assert window == [int(i) for i, m in zip(batch.input_ids[row], batch.attention_mask[row], strict=True) if m]
    assert [s.truncated for s in splits] == batch.truncated == [False, True, False]
    assert [s.tokens for s in splits] == [1, 60, 30]


def test_each_strategy_cuts_a_long_text_as_its_spans_say(splitter: Splitter) -> None:
    words = ["good", "bad", "fine", "dull", "fun"] * 20  # 100 tokens, one word each
    ids = [splitter.tokenizer.token_to_id(word) for word in words]
    frame = (splitter.prefix, splitter.suffix)
    (head_tail,) = splitter.split([" ".join(words)], "head+tail")
    head = round(30 * HEAD_SHARE)
    assert head_tail.windows == [[*frame[0], *ids[:head], *ids[100 - (30 - head):], *frame[1]]]
    assert (head_tail.tokens, head_tail.truncated, head_tail.strategy) == (100, True, "head+tail")
    (chunks,) = splitter.split([" ".join(words)], "chunks")
    assert chunks.windows == [[*frame[0], *ids[start:end], *frame[1]] for start, end in chunk_spans(100, 30, 7)]
    assert (len(chunks.windows), chunks.truncated, chunks.strategy) == (5, False, "chunks")
    assert all(len(window) <= 32 for window in chunks.windows)


def test_pad_right_with_a_mask() -> None:
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == mask.dtype == np.int64


def test_average_weights_each_window_by_its_length() -> None:
    rows = [np.array([1.0, 0.0], dtype=np.float32), np.array([0.0, 4.0], dtype=np.float32)]
    assert average(rows, [[0] * 3, [0]]).tolist() == [0.75, 1.0]
    assert average(rows, [[0] * 2, [0] * 2]).tolist() == [0.5, 2.0]
    assert average(rows[1:], [[0] * 5]).tolist() == [0.0, 4.0]
