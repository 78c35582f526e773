"""How a classifier reads a text longer than its window (``max_length`` tokens, special tokens included).

Each strategy cuts the text's token ids into *windows*, each framed by the tokenizer's special tokens and at most
``max_length`` long (the *room* of a window: ``max_length`` less the special tokens); every window is one row of a
model call (the batcher shares calls among requests' windows). A text that fits is one window whatever the
strategy; for a longer one:

- ``truncate``: one window of its first tokens (the rest is not read: ``truncated``);
- ``head+tail``: one window of its first tokens (a quarter of the room, `HEAD_SHARE`) and its last tokens (the
  other three quarters); the middle is not read (``truncated``). Sun et al. (2019, "How to Fine-Tune BERT for
  Text Classification?") found the first 128 and last 382 tokens the best 510 of an IMDb review;
- ``chunks``: windows sliding over the whole text, each re-reading the last quarter (`OVERLAP_SHARE`) of the
  room of the one before; the text's logits are the windows' logits averaged, weighted by window length.

It happens on token ids, before any graph runs, so both runtimes read long texts alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from app.settings import LongTextStrategy

STRATEGIES: tuple[LongTextStrategy, ...] = get_args(LongTextStrategy)
HEAD_SHARE = 0.25
"""The share of a window's room head+tail gives to the start of a long text; the rest goes to its end."""
OVERLAP_SHARE = 0.25
"""The share of a window's room that the next window of ``chunks`` reads again."""

Span = tuple[int, int]
"""Token positions ``[start, end)`` of a text's ids."""


def head_tail_spans(count: int, room: int, head_share: float = HEAD_SHARE) -> list[Span]:
    """The parts of a text of ``count`` tokens that one window of ``room`` tokens holds: the whole text when it
    fits, else its first ``round(room * head_share)`` tokens and its last ``room`` minus those."""
    if count <= room:
        return [(0, count)]
    head = round(room * head_share)
    return [(0, head), (count - (room - head), count)]


def chunk_spans(count: int, room: int, overlap: int) -> list[Span]:
    """Windows of at most ``room`` tokens covering a text of ``count`` tokens, one every ``room - overlap``
    tokens; each reads at least one token the previous did not, the last ends at ``count`` (and may be
    shorter). One window ``(0, count)`` when the text fits (an empty text too)."""
    if room < 1 or not 0 <= overlap < room:
        raise ValueError(f"an overlap of {overlap} tokens does not fit windows of {room}")
    step = room - overlap
    return [(start, min(start + room, count)) for start in range(0, max(count - overlap, 1), step)]


@dataclass(frozen=True)
class Split:
    """One text as the model reads it."""

    windows: list[list[int]]
    """Token ids of each window, special tokens included."""
    tokens: int
    """Tokens of the whole text, special tokens excluded."""
    strategy: LongTextStrategy
    truncated: bool
    """Some tokens of the text are in no window."""


class Splitter:
    """The artifact's tokenizer without truncation, cutting texts into windows as a strategy says."""

    def __init__(self, hf_dir: Path, max_length: int) -> None:
        self.tokenizer = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        framed = self.tokenizer.encode("a")
        text = [i for i, special in enumerate(framed.special_tokens_mask) if not special]
        self.prefix, self.suffix = framed.ids[:text[0]], framed.ids[text[-1] + 1:]
        self.room = max_length - len(self.prefix) - len(self.suffix)
        if self.room < 1:
            raise ValueError(f"max_length {max_length} leaves no room beside the special tokens")
        self.overlap = int(self.room * OVERLAP_SHARE)

    def split(self, texts: Sequence[str], strategy: LongTextStrategy) -> list[Split]:
        """Each text's windows under ``strategy`` (one batch call of the fast tokenizer)."""
        splits = []
        for encoding in self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False):
            ids, count = encoding.ids, len(encoding.ids)
            if strategy == "chunks":
                parts = [[span] for span in chunk_spans(count, self.room, self.overlap)]
            elif strategy == "head+tail":
                parts = [head_tail_spans(count, self.room)]
            else:
                parts = [[(0, min(count, self.room))]]
            windows = [[*self.prefix, *(i for start, end in spans for i in ids[start:end]), *self.suffix]
                       for spans in parts]
            splits.append(Split(windows, count, strategy, strategy != "chunks" and count > self.room))
        return splits


def pad(windows: Sequence[Sequence[int]], pad_id: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``input_ids`` and ``attention_mask`` of windows padded on the right to the longest."""
    width = max(len(window) for window in windows)
    ids = np.full((len(windows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(windows), width), dtype=np.int64)
    for row, window in enumerate(windows):
        ids[row, :len(window)] = window
        mask[row, :len(window)] = 1
    return ids, mask


def average(rows: Sequence[npt.NDArray[np.float32]], windows: Sequence[Sequence[int]]) -> npt.NDArray[np.float64]:
    """The logits of one text from those of its windows: their mean weighted by window length."""
    if len(rows) == 1:
        return np.asarray(rows[0], dtype=np.float64)
    return np.average(np.stack(rows).astype(np.float64), axis=0, weights=[len(w) for w in windows])
