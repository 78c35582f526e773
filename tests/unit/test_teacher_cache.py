"""The teacher's logits keyed by text: found whatever the order, computed once per text, persisted per teacher, and
a text without logits is an error (never zeros)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from training.classification.teacher_cache import TeacherCacheError, TeacherLogitsCache

TEACHER = "a" * 64


class FakeTeacher:
    """texts -> logits that depend on the text only; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @staticmethod
    def logits_of(text: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        return torch.randn(2, generator=torch.Generator().manual_seed(seed))

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        return torch.stack([self.logits_of(t) for t in texts])


TEXTS = ["a fine film .", "dull , very dull", "the plot is superb", "naïve — but warm ✓"]


def test_logits_are_found_by_text_whatever_the_order(tmp_path: Path) -> None:
    cache, teacher = TeacherLogitsCache(tmp_path / "t.safetensors", TEACHER, 2), FakeTeacher()
    assert cache.fill(TEXTS + TEXTS[:2], teacher) == 4
    assert teacher.calls == [TEXTS], "each distinct text once"
    shuffled = [TEXTS[2], TEXTS[0], TEXTS[3], TEXTS[0], TEXTS[1]]
    got = cache.lookup(shuffled)
    assert got.shape == (5, 2)
    for row, text in zip(got, shuffled, strict=True):
        torch.testing.assert_close(row, FakeTeacher.logits_of(text))
    assert TEXTS[3] in cache and "never seen" not in cache


def test_the_file_is_reused_and_only_new_texts_reach_the_teacher(tmp_path: Path) -> None:
    path = tmp_path / "teacher-logits" / "t.safetensors"
    TeacherLogitsCache(path, TEACHER, 2).fill(TEXTS, FakeTeacher())
    assert path.is_file() and not list(path.parent.glob(".*tmp"))
    teacher, reopened = FakeTeacher(), TeacherLogitsCache(path, TEACHER, 2)
    assert len(reopened) == 4
    assert reopened.fill(list(reversed(TEXTS)), teacher) == 0 and teacher.calls == []
    torch.testing.assert_close(reopened.lookup(TEXTS), FakeTeacher()(TEXTS))
    assert reopened.fill([*TEXTS, "a new one"], teacher) == 1 and teacher.calls == [["a new one"]]
    assert len(TeacherLogitsCache(path, TEACHER, 2)) == 5


def test_a_text_without_logits_is_an_error_not_zeros(tmp_path: Path) -> None:
    cache = TeacherLogitsCache(tmp_path / "t.safetensors", TEACHER, 2)
    cache.fill(TEXTS[:2], FakeTeacher())
    with pytest.raises(TeacherCacheError, match=r"1 of 3 texts have no teacher logits .*'the plot is superb'"):
        cache.lookup([TEXTS[0], TEXTS[2], TEXTS[1]])
    with pytest.raises(TeacherCacheError):
        TeacherLogitsCache(tmp_path / "absent.safetensors", TEACHER, 2).lookup(["x"])


def test_a_file_of_another_teacher_or_label_count_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    TeacherLogitsCache(path, TEACHER, 2).fill(TEXTS, FakeTeacher())
    with pytest.raises(TeacherCacheError, match=r"logits of teacher a{64}, not of b{64}"):
        TeacherLogitsCache(path, "b" * 64, 2)
    with pytest.raises(TeacherCacheError, match="expected 3 labels"):
        TeacherLogitsCache(path, TEACHER, 3)


def test_logits_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    cache = TeacherLogitsCache(tmp_path / "t.safetensors", TEACHER, 3)
    with pytest.raises(ValueError, match=r"logits \(4, 2\) for 4 texts and 3 labels"):
        cache.fill(TEXTS, FakeTeacher())
    assert len(cache) == 0 and not cache.path.exists()
