"""benchmarks/long_documents.py: documents of same-label sentences within the word range, seeded."""

from __future__ import annotations

import pytest

from benchmarks.long_documents import build_documents

SENTENCES = [(f"{'good' if label else 'bad'} sentence number {i} of label {label} .", label)
             for i in range(200) for label in (0, 1)]


def test_documents_join_same_label_sentences_within_the_word_range() -> None:
    documents = build_documents(SENTENCES, 12, min_words=40, max_words=70, seed=3)
    assert [label for _, label in documents] == [0, 1] * 6
    for text, label in documents:
        assert 40 <= len(text.split()) <= 70
        assert text.count(f"of label {label} .") == len(text.split()) // 8  # 8 words a sentence, all this label
        assert f"of label {1 - label}" not in text
        numbers = text.split("number ")[1:]
        assert len(set(numbers)) == len(numbers)  # no sentence twice
    assert build_documents(SENTENCES, 12, 40, 70, seed=3) == documents
    assert build_documents(SENTENCES, 12, 40, 70, seed=4) != documents


def test_too_few_sentences_for_the_minimum_is_an_error() -> None:
    with pytest.raises(ValueError, match="too few sentences"):
        build_documents(SENTENCES[:4], 2, min_words=40, max_words=70, seed=0)
