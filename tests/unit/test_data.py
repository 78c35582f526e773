"""Parsing labelled files: formats, label forms, and a clear file:line error for each bad-row case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.classification.data import DataError, LengthGroupedBatchSampler, pad_collate, read_examples

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
