"""Tokenisation shared by the tasks that read whole texts (with the truncation flag), softmax, and stand-in
inputs for a text model."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

# Batches are small and the cores belong to the inference threads: no second (rayon) thread pool.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WARMUP_TEXTS = ["warm-up", "a second and somewhat longer text, so that padding is exercised too"]
WARMUP_SENTENCE = " ".join(WARMUP_TEXTS * 2)
"""About 30 tokens, as an SST-2 sentence: the row a batch model's call overhead is measured with."""


@dataclass(frozen=True)
class Batch:
    input_ids: npt.NDArray[np.int64]
    attention_mask: npt.NDArray[np.int64]
    truncated: list[bool]


class TextEncoder:
    """The artifact's fast tokenizer (hf/tokenizer.json): at most ``max_length`` tokens, padded per batch.

    Truncation policy: tokens beyond ``max_length`` (special tokens included) are dropped from the end of
    the text and the result says ``truncated: true``.
    """

    def __init__(self, hf_dir: Path, max_length: int) -> None:
        self.tokenizer = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
        config = json.loads((hf_dir / "config.json").read_text())
        pad_id = config.get("pad_token_id")
        self.pad_id = int(pad_id) if isinstance(pad_id, int) else 0
        self.tokenizer.enable_truncation(max_length=max_length)
        pad_token = self.tokenizer.id_to_token(self.pad_id) or "[PAD]"
        self.tokenizer.enable_padding(pad_id=self.pad_id, pad_token=pad_token)

    def encode(self, texts: Sequence[str]) -> Batch:
        """One batch call of the fast tokenizer (no character offsets: nothing here reads them)."""
        encodings = self.tokenizer.encode_batch_fast(list(texts))
        return Batch(
            input_ids=np.array([e.ids for e in encodings], dtype=np.int64),
            attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),
            truncated=[bool(e.overflowing) for e in encodings],
        )

    def tokens(self, ids: npt.NDArray[np.int64]) -> list[str]:
        """The token strings of ``ids`` as the model sees them (special tokens included)."""
        return [self.tokenizer.id_to_token(int(token_id)) or "[UNK]" for token_id in ids]


def softmax(logits: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: npt.NDArray[np.float64] = exp / exp.sum(axis=-1, keepdims=True)
    return result


def trace_inputs(vocab_size: int) -> tuple[list[npt.NDArray[np.int64]], list[npt.NDArray[np.int64]]]:
    """Stand-in ``[input_ids, attention_mask]`` to trace a text model on, and a second pair of another shape to
    check the trace with: random ids, the last row padded from half its length."""
    def padded(rows: int, length: int, seed: int) -> list[npt.NDArray[np.int64]]:
        mask = np.ones((rows, length), dtype=np.int64)
        mask[-1, length // 2:] = 0
        return [np.random.default_rng(seed).integers(0, vocab_size, (rows, length), dtype=np.int64), mask]

    return padded(2, 8, seed=0), padded(3, 13, seed=1)
