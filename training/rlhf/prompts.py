"""Prompts: the first few words of review sentences (SST-2 is lower-cased and tokenised, so words are spaces apart)."""

from __future__ import annotations

import random
from pathlib import Path

from training.config import PromptConfig
from training.language_model.corpus import read_tsv_column


def prefixes(sentences: list[str], min_words: int, max_words: int, min_sentence_words: int, seed: int) -> list[str]:
    """One prompt per sentence of at least ``min_sentence_words`` words: its first n words, n uniform in
    [min_words, max_words] (seeded); duplicates kept once, in first-seen order."""
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    rng = random.Random(seed)
    out: dict[str, None] = {}
    for sentence in sentences:
        words = sentence.split()
        if len(words) >= max(min_sentence_words, max_words + 1):
            out.setdefault(" ".join(words[: rng.randint(min_words, max_words)]))
    return list(out)


def read_sentences(path: str, column: str, seed: int) -> list[str]:
    """Every sentence of a TSV's ``column``, in a seeded order."""
    return [text for _, text in read_tsv_column(Path(path), column, seed=seed)]


def read_prompts(cfg: PromptConfig, seed: int) -> tuple[list[str], list[str]]:
    """(training prompts, held-out evaluation prompts): from ``train_file`` and ``eval_file`` respectively; the
    evaluation set is at most ``eval_prompts`` of its prompts (seeded choice)."""
    def sentences(path: str) -> list[str]:
        return read_sentences(path, cfg.text_column, seed)

    train = prefixes(sentences(cfg.train_file), cfg.min_words, cfg.max_words, cfg.min_sentence_words, seed)
    held_out = prefixes(sentences(cfg.eval_file), cfg.min_words, cfg.max_words, cfg.min_sentence_words, seed + 1)
    if not train or not held_out:
        raise ValueError(f"no prompts: {len(train)} training, {len(held_out)} held out (sentences of at least "
                         f"{cfg.min_sentence_words} words needed)")
    return train, random.Random(seed).sample(held_out, min(cfg.eval_prompts, len(held_out)))
