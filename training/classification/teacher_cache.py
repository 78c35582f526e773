"""A teacher's logits keyed by the example's text (its UTF-8 sha256), persisted in one safetensors file per teacher.

Keyed by text, the logits do not depend on the student's tokenizer or truncation, nor on the order, split or subset
of the examples: a student of another vocabulary or architecture looks its examples up by text, and a second
student distilled from the same teacher reuses every logit the first one computed. The file holds two tensors,
``digests`` (uint8 [n, 32]) and ``logits`` (float32 [n, labels]), and names the teacher in its metadata.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


class TeacherCacheError(LookupError):
    """A text without cached logits, or a cache file of another teacher."""

    def __str__(self) -> str:  # KeyError-like classes would print the message quoted
        return str(self.args[0])


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class TeacherLogitsCache:
    """Logits of the teacher ``teacher`` (an id: its manifest's sha256) by text, in the file ``path``.

    `fill` runs the teacher on the texts not cached yet and saves; `lookup` only reads, and refuses a text that has
    no logits: a student never trains on made-up targets.
    """

    def __init__(self, path: Path, teacher: str, num_labels: int) -> None:
        self.path, self.teacher, self.num_labels = Path(path), teacher, num_labels
        self.rows: dict[bytes, torch.Tensor] = {}
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        with safe_open(str(self.path), framework="pt") as fh:
            written_for = (fh.metadata() or {}).get("teacher")
            if written_for != self.teacher:
                raise TeacherCacheError(f"{self.path} holds the logits of teacher {written_for}, not of {self.teacher}")
            digests, logits = fh.get_tensor("digests"), fh.get_tensor("logits")
        if logits.ndim != 2 or logits.shape[1] != self.num_labels or len(digests) != len(logits):
            raise TeacherCacheError(f"{self.path}: logits {tuple(logits.shape)} for {len(digests)} texts, expected "
                                    f"{self.num_labels} labels a text")
        raw = digests.contiguous().numpy().tobytes()
        self.rows = {raw[32 * i:32 * i + 32]: row for i, row in enumerate(logits)}

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and text_key(text) in self.rows

    def missing(self, texts: Sequence[str]) -> list[str]:
        """The distinct texts without logits, in their first order."""
        return [text for text in dict.fromkeys(texts) if text_key(text) not in self.rows]

    def fill(self, texts: Sequence[str], predict: Callable[[list[str]], torch.Tensor]) -> int:
        """Run ``predict`` (texts -> logits [n, labels]) on the texts not cached yet, keep and save their logits;
        returns how many texts it ran on (0: the teacher was not called)."""
        todo = self.missing(texts)
        if not todo:
            return 0
        logits = predict(todo).detach().float().cpu()
        if tuple(logits.shape) != (len(todo), self.num_labels):
            raise ValueError(f"the teacher gave logits {tuple(logits.shape)} for {len(todo)} texts and "
                             f"{self.num_labels} labels")
        self.rows.update((text_key(text), row) for text, row in zip(todo, logits, strict=True))
        self._save()
        return len(todo)

    def lookup(self, texts: Sequence[str]) -> torch.Tensor:
        """The logits of ``texts`` in their order, [n, labels]; a text without logits is an error."""
        absent = self.missing(texts)
        if absent:
            raise TeacherCacheError(f"{len(absent)} of {len(set(texts))} texts have no teacher logits in "
                                    f"{self.path}, e.g. {absent[0][:80]!r}")
        if not texts:
            return torch.empty((0, self.num_labels))
        return torch.stack([self.rows[text_key(text)] for text in texts])

    def _save(self) -> None:
        """Write the file atomically (a temporary file renamed over it: a reader sees the old or the new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.rows)
        digests = torch.frombuffer(bytearray(b"".join(keys)), dtype=torch.uint8).reshape(len(keys), 32)
        logits = torch.stack([self.rows[key] for key in keys])
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        save_file({"digests": digests, "logits": logits.contiguous()}, str(tmp), metadata={"teacher": self.teacher})
        os.replace(tmp, self.path)
