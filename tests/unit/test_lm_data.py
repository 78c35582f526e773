"""Corpus reading, held-out split by document, BPE training, packing into blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lm_helpers import LINES, write_corpus
from training.config import LMDataConfig
from training.language_model.corpus import EOS, pack, read_corpus, read_tsv_column, split_documents, train_tokenizer
from training.verbs.lm import _documents


def test_read_corpus_is_seeded_and_capped(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "corpus", copies=6)
    (root / "empty.txt").write_text("   \n")
    docs = read_corpus(root, "**/*.txt", None, seed=1)
    assert len(docs) == 6 and all(text for _, text in docs)
    assert [name for name, _ in docs] == [name for name, _ in read_corpus(root, "**/*.txt", None, seed=1)]
    capped = read_corpus(root, "**/*.txt", 500, seed=1)
    assert sum(len(text) for _, text in capped) == 500
    with pytest.raises(FileNotFoundError):
        read_corpus(tmp_path / "nothing", "**/*.txt", None, seed=1)


def test_a_tsv_column_gives_one_document_per_row(tmp_path: Path) -> None:
    rows = ["it 's a \"charming\" film", "", "dull , dull , dull", "the best of the year"]
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{text} \t{i % 2}\n" for i, text in enumerate(rows)))
    docs = read_tsv_column(train, "sentence", seed=3)
    assert sorted(text for _, text in docs) == sorted(t for t in rows if t)  # quotes kept, blanks dropped
    assert docs == read_tsv_column(train, "sentence", seed=3)
    assert {where for where, _ in docs} == {"train.tsv:2", "train.tsv:4", "train.tsv:5"}
    assert sum(len(text) for _, text in read_tsv_column(train, "sentence", max_chars=20, seed=3)) == 20
    with pytest.raises(ValueError, match="no column 'text'"):
        read_tsv_column(train, "text")
    held_out = tmp_path / "test.tsv"
    held_out.write_text("sentence\tlabel\nnever seen before\t1\n")
    _, texts, val = _documents(LMDataConfig(tsv_file=str(train), val_tsv_file=str(held_out)), seed=0)
    assert (len(texts), val) == (3, ["never seen before"])
    _, texts, val = _documents(LMDataConfig(tsv_file=str(train), val_fraction=0.34), seed=0)
    assert (len(texts), len(val)) == (2, 1) and not set(texts) & set(val)


def test_split_holds_out_whole_documents() -> None:
    docs = [(f"d{i}", f"text {i}") for i in range(20)]
    train, val = split_documents(docs, 0.1)
    assert (len(train), len(val)) == (18, 2)
    assert not set(train) & set(val)
    assert split_documents(docs[:2], 0.01) == (["text 0"], ["text 1"])
    with pytest.raises(ValueError, match="at least 2"):
        split_documents(docs[:1], 0.5)


def test_pack_appends_eos_and_drops_the_remainder() -> None:
    blocks = pack([[1, 2, 3], [4, 5], [6]], eos_id=0, block_size=4)
    assert blocks.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6]]  # the trailing eos after 6 is dropped
    assert pack([[1]], eos_id=0, block_size=4).shape == (0, 4)


def test_bpe_round_trip_and_special_tokens() -> None:
    tokenizer = train_tokenizer(LINES * 4, vocab_size=300, max_length=32)
    assert tokenizer.eos_token == tokenizer.bos_token == EOS
    assert tokenizer.convert_tokens_to_ids(EOS) == tokenizer.eos_token_id == 0
    assert 257 <= len(tokenizer) <= 300
    text = "Call me Ishmael. Whales, zebras and ünïcode!"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(tokenizer("the whale rose from the sea")["input_ids"]) < len("the whale rose from the sea")
