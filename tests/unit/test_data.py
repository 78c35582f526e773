"""Parsing labelled files: formats, label forms, and a clear file:line error for each bad-row case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from tests.conftest import write_tsv
from training.classification.data import (
    DataError,
    Example,
    LengthGroupedBatchSampler,
    TextClassificationDataModule,
    hold_out_sentences,
    pad_collate,
    read_examples,
)
from training.config import DataConfig

LABELS = ["negative", "positive"]


def parse(path: Path, text: str = "sentence", label: str = "label"):
    return read_examples(path, text, label, LABELS)


def test_tsv_with_index_labels(tmp_path: Path) -> None:
    path = tmp_path / "a.tsv"
    path.write_text('sentence\tlabel\nit \'s "great"\t1\nawful\t0\n')
    examples = parse(path)
    assert [(e.text, e.label) for e in examples] == [('it \'s "great"', 1), ("awful", 0)]


def test_csv_with_named_labels_and_custom_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('review,stars\n"good, really",positive\nbad,negative\n')
    examples = read_examples(path, "review", "stars", LABELS)
    assert [(e.text, e.label) for e in examples] == [("good, really", 1), ("bad", 0)]


def test_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"sentence": "fine", "label": 1}) + "\n\n" + json.dumps({"sentence": "no", "label": 0}))
    assert [e.label for e in parse(path)] == [1, 0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.tsv", "text\tlabel\ngood\t1\n", "missing.tsv:2: missing column 'sentence'"),
        ("short.tsv", "sentence\tlabel\ngood\t1\nbad\n", "short.tsv:3: missing column 'label'"),
        ("unknown.tsv", "sentence\tlabel\ngood\t1\nbad\t0\nmeh\t7\n", "unknown.tsv:4: unknown label '7'"),
        ("empty.tsv", "sentence\tlabel\ngood\t1\n   \t0\n", "empty.tsv:3: empty text"),
        ("oneclass.tsv", "sentence\tlabel\ngood\t1\nfine\t1\n", "oneclass.tsv: class 'negative' has zero rows"),
        ("bad.jsonl", '{"sentence": "a", "label": 1}\n{oops\n', "bad.jsonl:2: invalid JSON"),
        ("norows.tsv", "sentence\tlabel\n", "norows.tsv: no rows"),
        ("data.parquet", "x", "unsupported format '.parquet'"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as err:
        parse(path)
    assert message in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        parse(tmp_path / "nope.tsv")


def test_length_grouped_batches_cover_every_index_once_with_little_padding() -> None:
    lengths = [(i * 7919) % 60 + 1 for i in range(1000)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, window=10, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(batches) == len(sampler)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.15 * sum(lengths)  # random batches would pad to ~1.9x
    assert [b[:3] for b in batches] != [b[:3] for b in sampler]  # a new order each epoch


def test_pad_collate() -> None:
    batch = pad_collate(0)([{"input_ids": [5, 6, 7], "label": 1}, {"input_ids": [8], "label": 0}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


SENTENCES = [
    ("a moving and stark reminder that the casualties of war reach much further than we imagine .", 1),
    ("sheridan is painfully bad , a fourth-rate jim carrey who does n't understand dumb fun .", 0),
    ("the film is a charming and often affecting journey through a small town .", 1),
    ("an overlong , tedious mess that never finds the story it wants to tell .", 0),
]


def treebank() -> list[Example]:
    """Each sentence with phrases of it, as SST-2's train split has them: a 5-word and a 4-word one, a 2-word one."""
    rows: list[Example] = []
    for text, label in SENTENCES:
        words = text.split()
        rows += [Example(text, label), Example(" ".join(words[:5]), label), Example(" ".join(words[-4:]), label),
                 Example(" ".join(words[1:3]), label)]
    return [*rows, Example("bad", 0), Example("charming", 1)]


def test_held_out_sentences_take_their_longer_phrases_out_of_training() -> None:
    rows = treebank()
    train, validation = hold_out_sentences(rows, 2, seed=3)
    assert len(validation) == 2 and {ex.text for ex in validation} <= {text for text, _ in SENTENCES}
    held = " ".join(ex.text for ex in validation)
    for ex in rows:
        long_inside = len(ex.text.split()) >= 4 and ex.text in held
        assert (ex in train) == (ex not in validation and not long_inside), ex
    assert Example("bad", 0) in train and Example("charming", 1) in train  # short phrases stay
    assert len(train) == len(rows) - 2 * 3  # each held-out sentence with its 5- and 4-word phrases
    assert hold_out_sentences(rows, 2, seed=3) == (train, validation)  # the seed decides
    assert {ex.text for ex in hold_out_sentences(rows, 4, seed=3)[1]} == {text for text, _ in SENTENCES}


def test_holding_out_more_sentences_than_there_are_is_refused() -> None:
    with pytest.raises(DataError, match="asked to hold out 5 sentences; the training split has 4"):
        hold_out_sentences(treebank(), 5, seed=0)
    with pytest.raises(DataError, match="must be a positive number of sentences"):
        hold_out_sentences(treebank(), -1, seed=0)


def datamodule_of(data_dir: Path, tiny_base: Path, seed: int = 0, **data: Any) -> TextClassificationDataModule:
    """The DataModule of the files in ``data_dir`` with the tiny model's tokenizer (128 tokens a text)."""
    return TextClassificationDataModule(DataConfig(data_dir=str(data_dir), **data),
                                        AutoTokenizer.from_pretrained(tiny_base), 128, seed=seed)


def test_the_datamodule_validates_on_held_out_sentences_and_never_reads_the_val_file(tiny_base: Path,
                                                                                     tmp_path: Path) -> None:
    rows = treebank()
    write_tsv(tmp_path / "train.tsv", [(ex.text, ex.label) for ex in rows])  # no dev.tsv: reading it would fail
    datamodule = datamodule_of(tmp_path, tiny_base, seed=3, holdout_sentences=2)
    datamodule.setup("fit")
    train, validation = hold_out_sentences(rows, 2, seed=3)
    assert datamodule.splits["val"].texts == [ex.text for ex in validation]
    assert datamodule.splits["train"].texts == [ex.text for ex in train]
    with pytest.raises(DataError, match=r"dev\.tsv: file not found"):
        datamodule_of(tmp_path, tiny_base).setup("fit")


def test_evaluation_batches_hold_similar_lengths_in_an_order_that_reads_every_length_first(tiny_base: Path,
                                                                                           tmp_path: Path) -> None:
    rows = [(" ".join(["good"] * n), n % 2) for n in range(1, 65)]  # 64 texts, each of another length
    for name in ("train.tsv", "dev.tsv"):
        write_tsv(tmp_path / name, rows)
    datamodule = datamodule_of(tmp_path, tiny_base, seed=3, eval_batch_size=8)
    datamodule.setup("fit")
    batches = list(datamodule.val_dataloader())
    widths = [int(batch["attention_mask"].sum(1).max()) for batch in batches]
    for batch in batches:  # each batch: 8 neighbours in length, so padding is at most 7 tokens a row
        assert int(batch["attention_mask"].sum(1).min()) >= int(batch["attention_mask"].sum(1).max()) - 7
    assert sorted(len(batch["labels"]) for batch in batches) == [8] * 8
    assert widths != sorted(widths)  # not shortest first: a run reading 2 of the 8 batches reads longer rows too
    assert max(widths[:2]) > sorted(widths)[1]
    assert widths == [int(b["attention_mask"].sum(1).max()) for b in datamodule.val_dataloader()]  # same each time
