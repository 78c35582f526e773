"""Labelled text: file parsing with line-accurate errors, and the Lightning DataModule."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from training.config import DataConfig
from training.distributed import EpochBatches, fixed_batches, rank_and_world, shard_batches


class DataError(ValueError):
    """Malformed input data; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    text: str
    label: int


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row) for a .tsv, .csv or .jsonl file."""
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8", newline="") as fh:
        if suffix in {".tsv", ".csv"}:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",", quoting=csv.QUOTE_NONE
                                    if suffix == ".tsv" else csv.QUOTE_MINIMAL)
            for row in reader:
                yield reader.line_num, row
        elif suffix in {".jsonl", ".json"}:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{line_no}: expected a JSON object per line")
                yield line_no, row
        else:
            raise DataError(f"{path}: unsupported format {suffix!r} (use .tsv, .csv or .jsonl)")


def _label_index(raw: Any, labels: Sequence[str]) -> int | None:
    value = str(raw).strip()
    if value in labels:
        return labels.index(value)
    if value.lstrip("-").isdigit() and 0 <= int(value) < len(labels):
        return int(value)
    return None


def read_examples(path: Path, text_column: str, label_column: str, labels: Sequence[str]) -> list[Example]:
    """Parse one labelled file; labels may be given as names or as indices into ``labels``."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    examples: list[Example] = []
    for line_no, row in _rows(path):
        for column in (text_column, label_column):
            if column not in row or row[column] is None:
                raise DataError(f"{path}:{line_no}: missing column {column!r} (have {sorted(k for k in row if k)})")
        text = str(row[text_column]).strip()
        if not text:
            raise DataError(f"{path}:{line_no}: empty text")
        label = _label_index(row[label_column], labels)
        if label is None:
            raise DataError(f"{path}:{line_no}: unknown label {row[label_column]!r} (expected one of {list(labels)}"
                            f" or 0..{len(labels) - 1})")
        examples.append(Example(text, label))
    if not examples:
        raise DataError(f"{path}: no rows")
    counts = [0] * len(labels)
    for ex in examples:
        counts[ex.label] += 1
    empty = [labels[i] for i, c in enumerate(counts) if c == 0]
    if empty:
        raise DataError(f"{path}: class {empty[0]!r} has zero rows")
    return examples


class EncodedDataset(Dataset[dict[str, Any]]):
    """Token ids (unpadded) and labels, and the texts they encode; padding happens per batch in the collate function.

    ``extras`` holds optional per-example fields (e.g. cached teacher logits), indexed like the
    examples and stacked per batch by the collate function.
    """

    def __init__(self, input_ids: list[list[int]], labels: list[int], texts: Sequence[str] = ()) -> None:
        self.input_ids = input_ids
        self.labels = labels
        self.texts = list(texts)
        self.extras: dict[str, Sequence[Any]] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.input_ids[i], "label": self.labels[i],
                **{key: values[i] for key, values in self.extras.items()}}


class LengthGroupedBatchSampler(EpochBatches):
    """Shuffled batches of similar length: sort within random windows of ``window`` batches.

    Short sentences no longer pay for the padding of the longest one in a random batch, which
    is most of the cost on a CPU. Across processes, rank ``rank`` of ``world`` gets its share of the same global
    batches (`training.distributed.shard_batches`: an exact partition, equally many batches per rank).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, window: int = 50, seed: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.window = window
        self.seed = seed
        super().__init__(self.batches, (len(lengths) + batch_size - 1) // batch_size, rank, world)

    def batches(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch`` (the same on every rank)."""
        rng = random.Random(self.seed + epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        span = self.batch_size * self.window
        batches: list[list[int]] = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start:start + span], key=lambda i: self.lengths[i])
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        rng.shuffle(batches)
        return batches


def pad_collate(pad_id: int) -> Any:
    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it["input_ids"])
            ids[row, :n] = torch.tensor(it["input_ids"])
            mask[row, :n] = 1
        extras = [key for key in items[0] if key not in {"input_ids", "label"}]
        return {"input_ids": ids, "attention_mask": mask,
                "labels": torch.tensor([it["label"] for it in items], dtype=torch.long),
                **{key: torch.stack([torch.as_tensor(it[key]) for it in items]) for key in extras}}

    return collate


def encode(tokenizer: Any, texts: Sequence[str], labels: Sequence[int], max_length: int) -> EncodedDataset:
    """``texts`` as ``tokenizer`` encodes them for a classifier: special tokens, truncated to ``max_length``."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    return EncodedDataset(enc["input_ids"], list(labels), texts)


SENTENCE_WORDS = 8
"""The shortest row `hold_out_sentences` draws as a whole sentence (it must also lie inside no other row)."""
HELD_OUT_PHRASE_WORDS = 4
"""Training phrases of at least this many words inside a held-out sentence leave the training set with it; shorter
ones (words, short n-grams) are shared by many sentences, as they are with test sentences, and stay."""


def hold_out_sentences(examples: Sequence[Example], count: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, validation) from a phrase-level treebank split such as SST-2's train.tsv, which holds each sentence
    and its labelled sub-phrases: ``count`` whole sentences (rows of `SENTENCE_WORDS` or more words inside no other
    row), drawn with ``seed``, become the validation set, and every phrase of `HELD_OUT_PHRASE_WORDS` or more words
    inside one of them leaves the training set. Validation then reads unseen sentences, as the test set does (SST-2's
    dev.tsv is phrases of the training sentences: 89% of its rows lie inside a training row)."""
    if count <= 0:
        raise DataError(f"holdout_sentences must be a positive number of sentences (or 0 for val_file); got {count}")
    every = "\n".join(ex.text for ex in examples)
    words = [len(ex.text.split()) for ex in examples]
    candidates = [i for i, n in enumerate(words) if n >= SENTENCE_WORDS]
    random.Random(seed).shuffle(candidates)
    held: list[int] = []
    for i in candidates:
        if len(held) == count:
            break
        if every.count(examples[i].text) == 1:  # inside no other row: a whole sentence
            held.append(i)
    if len(held) < count:
        raise DataError(f"asked to hold out {count} sentences; the training split has {len(held)} (rows of "
                        f"{SENTENCE_WORDS} or more words inside no other row)")
    validation = [examples[i] for i in held]
    inside = "\n".join(ex.text for ex in validation)
    chosen = set(held)
    train = [ex for i, ex in enumerate(examples) if i not in chosen
             and not (words[i] >= HELD_OUT_PHRASE_WORDS and ex.text in inside)]
    return train, validation


def load_split(cfg: DataConfig, split: str) -> list[Example]:
    """Examples of one split, from files under ``cfg.data_dir`` or from an HF dataset id."""
    if cfg.hf_dataset:
        try:
            import datasets
        except ImportError as exc:  # optional, online-only path
            raise DataError("hf_dataset needs the `datasets` package (pip install datasets)") from exc
        hf_split = {"train": cfg.train_file, "val": cfg.val_file, "test": cfg.test_file}[split]
        ds = datasets.load_dataset(cfg.hf_dataset, split=hf_split)
        return [Example(str(r[cfg.text_column]).strip(), int(r[cfg.label_column])) for r in ds]
    name = {"train": cfg.train_file, "val": cfg.val_file, "test": cfg.test_file}[split]
    return read_examples(Path(cfg.data_dir) / name, cfg.text_column, cfg.label_column, cfg.labels)


class TextClassificationDataModule(L.LightningDataModule):
    def __init__(self, cfg: DataConfig, tokenizer: Any, max_length: int, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.seed = seed
        self.splits: dict[str, EncodedDataset] = {}
        self._held_out: tuple[list[Example], list[Example]] | None = None

    def _encode(self, examples: list[Example]) -> EncodedDataset:
        return encode(self.tokenizer, [ex.text for ex in examples], [ex.label for ex in examples], self.max_length)

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "",
                                                                                      ("train", "val", "test"))
        for split in wanted:
            if split not in self.splits:
                examples = self._examples(split)
                if split == "train" and self.cfg.max_train_examples:
                    examples = random.Random(self.seed).sample(examples, min(len(examples),
                                                                              self.cfg.max_train_examples))
                self.splits[split] = self._encode(examples)

    def _examples(self, split: str) -> list[Example]:
        if not self.cfg.holdout_sentences or split == "test":
            return load_split(self.cfg, split)
        if self._held_out is None:
            self._held_out = hold_out_sentences(load_split(self.cfg, "train"), self.cfg.holdout_sentences, self.seed)
        return self._held_out[split == "val"]

    def split_sizes(self) -> dict[str, int]:
        return {name: len(ds) for name, ds in self.splits.items()}

    def _loader(self, split: str, train: bool) -> DataLoader[dict[str, Any]]:
        return self.loader(split, train, *rank_and_world(self.trainer))

    def loader(self, split: str, train: bool, rank: int = 0, world: int = 1) -> DataLoader[dict[str, Any]]:
        """The loader of ``split`` for rank ``rank`` of ``world`` processes (its share of the batches only)."""
        ds = self.splits[split]
        collate = pad_collate(self.tokenizer.pad_token_id or 0)
        size = self.cfg.batch_size if train else self.cfg.eval_batch_size
        lengths = [len(x) for x in ds.input_ids]
        if train:
            sampler: Sampler[list[int]] = LengthGroupedBatchSampler(lengths, size, seed=self.seed, rank=rank,
                                                                    world=world)
        else:  # batches cut from the rows sorted by length (same results, far less padding), in a seeded order: a
            # run that reads only the first few (`limit_val_batches`) reads rows of every length, not the shortest
            order = sorted(range(len(ds)), key=lambda i: lengths[i])
            batches = fixed_batches(order, size)
            random.Random(self.seed).shuffle(batches)
            sampler = _FixedBatches(shard_batches(batches, rank, world))
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=self.cfg.num_workers)

    def train_dataloader(self) -> DataLoader[dict[str, Any]]:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader[dict[str, Any]]:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader[dict[str, Any]]:
        return self._loader("test", train=False)


class _FixedBatches(Sampler[list[int]]):
    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)
