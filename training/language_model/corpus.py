"""Causal-LM data: a folder of .txt documents (or one TSV column of sentences), a byte-level BPE tokenizer,
fixed-size packed blocks."""

from __future__ import annotations

import csv
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from tokenizers import ByteLevelBPETokenizer
from torch.utils.data import DataLoader, Sampler, TensorDataset
from transformers import PreTrainedTokenizerFast

from training.config import LMDataConfig
from training.distributed import EpochBatches, fixed_batches, rank_and_world

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"


def read_corpus(root: Path, pattern: str, max_chars: int | None, seed: int) -> list[tuple[str, str]]:
    """(relative path, text) of every non-empty document, in a seeded random order, up to ``max_chars``."""
    paths = sorted(p for p in root.glob(pattern) if p.is_file())
    if not paths:
        raise FileNotFoundError(f"no files matching {pattern!r} under {root}")
    random.Random(seed).shuffle(paths)
    docs: list[tuple[str, str]] = []
    total = 0
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if not text:
            continue
        if max_chars is not None and total + len(text) > max_chars:
            text = text[: max_chars - total]
        docs.append((path.relative_to(root).as_posix(), text))
        total += len(text)
        if max_chars is not None and total >= max_chars:
            break
    return docs


def read_tsv_column(path: Path, column: str, max_chars: int | None = None, seed: int = 0) -> list[tuple[str, str]]:
    """(``path:line``, text) of every non-empty ``column`` cell of a TSV with a header row (GLUE style: no quoting),
    in a seeded random order, up to ``max_chars``: each row is one document (e.g. one SST-2 review sentence)."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        if column not in (reader.fieldnames or []):
            raise ValueError(f"{path}: no column {column!r} (columns: {reader.fieldnames})")
        rows = [(f"{path.name}:{i + 2}", (row[column] or "").strip()) for i, row in enumerate(reader)]
    docs = [(where, text) for where, text in rows if text]
    if not docs:
        raise ValueError(f"{path}: no text in column {column!r}")
    random.Random(seed).shuffle(docs)
    if max_chars is None:
        return docs
    kept, total = [], 0
    for where, text in docs:
        if total >= max_chars:
            break
        kept.append((where, text[: max_chars - total]))
        total += len(kept[-1][1])
    return kept


def split_documents(docs: Sequence[tuple[str, str]], val_fraction: float) -> tuple[list[str], list[str]]:
    """Held-out split by whole document: the last ``val_fraction`` of the (already shuffled) files."""
    if len(docs) < 2:
        raise ValueError(f"need at least 2 documents for a held-out split, found {len(docs)}")
    n_val = min(len(docs) - 1, max(1, round(len(docs) * val_fraction)))
    texts = [text for _, text in docs]
    return texts[:-n_val], texts[-n_val:]


def train_tokenizer(texts: Sequence[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A GPT-2 style byte-level BPE trained on ``texts``; ``<|endoftext|>`` is bos, eos, unk and pad."""
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS],
                            show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   pad_token=EOS, model_max_length=max_length)


def pack(token_lists: Sequence[Sequence[int]], eos_id: int, block_size: int) -> torch.Tensor:
    """Documents joined with an eos after each, cut into [n, block_size] blocks (the remainder is dropped)."""
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        stream.append(eos_id)
    n = len(stream) // block_size
    return torch.tensor(stream[: n * block_size], dtype=torch.long).view(n, block_size)


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    ids: list[list[int]] = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    return ids


class CorpusDataModule(L.LightningDataModule):
    """Train and validation blocks of a document folder, tokenised once in ``setup``."""

    def __init__(self, cfg: LMDataConfig, tokenizer: Any, train_texts: Sequence[str],
                 val_texts: Sequence[str], seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.tokenizer, self.seed = cfg, tokenizer, seed
        self.train_texts, self.val_texts = list(train_texts), list(val_texts)
        self.train: torch.Tensor | None = None
        self.val: torch.Tensor | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        eos, size = int(self.tokenizer.eos_token_id), self.cfg.block_size
        self.train = pack(encode(self.tokenizer, self.train_texts), eos, size)
        self.val = pack(encode(self.tokenizer, self.val_texts), eos, size)
        if len(self.train) == 0 or len(self.val) == 0:
            raise ValueError(f"corpus too small for blocks of {size} tokens: {self.split_sizes()}")
        log.info("packed %s blocks of %d tokens", self.split_sizes(), size)

    def split_sizes(self) -> dict[str, int]:
        return {"train_blocks": 0 if self.train is None else len(self.train),
                "val_blocks": 0 if self.val is None else len(self.val),
                "train_documents": len(self.train_texts), "val_documents": len(self.val_texts)}

    def train_dataloader(self) -> DataLoader[Any]:
        return self.loader("train", *rank_and_world(self.trainer))

    def val_dataloader(self) -> DataLoader[Any]:
        return self.loader("val", *rank_and_world(self.trainer))

    def loader(self, split: str, rank: int = 0, world: int = 1) -> DataLoader[Any]:
        """Rank ``rank``'s share of the blocks of ``split`` ("train": reshuffled each epoch; "val": in order)."""
        blocks = self.train if split == "train" else self.val
        assert blocks is not None, "setup() first"
        n = len(blocks)
        if split == "train":
            size, seed = self.cfg.batch_size, self.seed

            def shuffled(epoch: int) -> list[list[int]]:
                return fixed_batches(torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
                                     .tolist(), size)

            sampler: Sampler[list[int]] = EpochBatches(shuffled, (n + size - 1) // size, rank, world)
        else:
            sampler = EpochBatches(lambda _: fixed_batches(range(n), self.cfg.eval_batch_size),
                                   (n + self.cfg.eval_batch_size - 1) // self.cfg.eval_batch_size, rank, world)
        return DataLoader(TensorDataset(blocks), batch_sampler=sampler, num_workers=self.cfg.num_workers)
