"""Unlabelled sentences for distillation: noisy variants of the long training texts, for the teacher to label.

SST-2's training split is mostly short phrases (9.4 words on average) while its test split holds whole sentences
(19.5 words): a student distilled on the phrases alone learns the teacher where the test does not look. Following
Tang et al. (2019), "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks", each training text
of at least ``min_words`` words yields ``copies`` variants in which every word is, independently, dropped with
probability ``p_drop`` or replaced with probability ``p_swap`` by a word drawn from all the texts' words (unigram
frequencies; the paper draws from words of the same part of speech). The teacher labels them: its logits are
their soft target, its argmax their label.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def sentence_variants(texts: Sequence[str], copies: int, min_words: int = 15, p_drop: float = 0.1,
                      p_swap: float = 0.1, seed: int = 0) -> list[str]:
    """Up to ``copies`` variants of each text of at least ``min_words`` words, none equal to a given text or to
    another variant; the same arguments give the same list."""
    rng = random.Random(seed)
    pool = [word for text in texts for word in text.split()]
    seen, variants = set(texts), []
    for text in texts:
        words = text.split()
        if len(words) < min_words:
            continue
        for _ in range(copies):
            out = []
            for word in words:
                draw = rng.random()
                if draw < p_drop:
                    continue
                out.append(rng.choice(pool) if draw < p_drop + p_swap else word)
            variant = " ".join(out)
            if out and variant not in seen:
                seen.add(variant)
                variants.append(variant)
    return variants
