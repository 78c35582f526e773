"""Task names as manifests spell them: the one list both sides agree on."""

from __future__ import annotations

TEXT_CLASSIFICATION = "text-classification"
"""Labels for a text (sentiment is this task with the labels negative/positive)."""
GENERATION = "text-generation"
"""A causal language model that continues a prompt."""
SENTENCE_EMBEDDING = "sentence-embedding"
"""One vector per text (pooled token states), for similarity search."""
LEGACY_CLASSIFICATION = "sentiment"
"""What schemas 1.0 to 1.3 called text-classification; still read, never written."""

TASKS = (TEXT_CLASSIFICATION, GENERATION, SENTENCE_EMBEDDING)


def canonical_task(task: str) -> str:
    """The task's current name (``sentiment`` -> ``text-classification``)."""
    return TEXT_CLASSIFICATION if task == LEGACY_CLASSIFICATION else task
