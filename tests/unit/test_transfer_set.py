"""Noisy variants of the long training texts, for a teacher to label (distillation's transfer set)."""

from __future__ import annotations

from training.classification.transfer_set import sentence_variants

TEXTS = ["a gripping , beautifully acted film about two brothers and the sea",
         "dull",
         "the plot never finds its footing and the jokes land with a thud every time",
         "too short to vary"]


def test_only_long_texts_vary_and_nothing_repeats() -> None:
    variants = sentence_variants(TEXTS, copies=5, min_words=6, seed=1)
    assert 6 <= len(variants) <= 10
    assert len(set(variants)) == len(variants) and not set(variants) & set(TEXTS)
    pool = {word for text in TEXTS for word in text.split()}
    assert all(set(v.split()) <= pool for v in variants)
    long_words = [len(t.split()) for t in TEXTS if len(t.split()) >= 6]
    assert all(len(v.split()) <= max(long_words) for v in variants)


def test_same_arguments_same_variants_and_the_seed_matters() -> None:
    first = sentence_variants(TEXTS, copies=3, min_words=6, seed=7)
    assert first == sentence_variants(TEXTS, copies=3, min_words=6, seed=7)
    assert first != sentence_variants(TEXTS, copies=3, min_words=6, seed=8)


def test_no_copies_or_no_long_text_gives_nothing() -> None:
    assert sentence_variants(TEXTS, copies=0) == []
    assert sentence_variants(TEXTS, copies=3, min_words=50) == []


def test_drop_and_swap_rates_show_in_the_variants() -> None:
    words = [f"w{i}" for i in range(2000)]
    dropped = sentence_variants([" ".join(words)], copies=1, min_words=10, p_drop=0.1, p_swap=0.0, seed=0)[0]
    assert 1700 < len(dropped.split()) < 1900 and set(dropped.split()) <= set(words)
    swapped = sentence_variants([" ".join(words)], copies=1, min_words=10, p_drop=0.0, p_swap=0.1, seed=0)[0]
    changed = sum(a != b for a, b in zip(swapped.split(), words, strict=True))
    assert 150 < changed < 250
