"""The contract of a text generator: ``load()``, ``warmup()``, ``encode()``, ``tokens()``, ``stream()``, ``info``.

Engines implement two steps over their own KV cache: ``_prefill(prompt ids) -> (logits, state)`` and
``_decode(token, state) -> logits``. Sampling, stop strings, eos and the context limit live here, once.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from app.artifacts import Artifact
from app.backends.engine import Engine
from app.backends.generation.sampling import SamplingParams, next_token

FinishReason = Literal["length", "stop"]


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 64
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    """Same seed and parameters, same text; None = a fresh random seed."""


@dataclass(frozen=True)
class Chunk:
    """New text; the last chunk of a generation carries ``finish_reason`` and the token counts."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Generator(Engine):
    """A loaded causal LM; HTTP never reaches below this interface."""

    def __init__(self, artifact: Artifact, device: str, threads: int, dtype: str = "fp32") -> None:
        super().__init__(artifact, device, threads, dtype)
        generation = artifact.manifest.get("generation", {})
        self.context_length = int(generation.get("context_length", artifact.max_length))
        eos = generation.get("eos_token_id")
        self.eos_token_id: int | None = int(eos) if isinstance(eos, int) else None
        self._tokenizer: Tokenizer | None = None

    def load(self) -> None:
        self._tokenizer = Tokenizer.from_file(str(self.artifact.hf_dir / "tokenizer.json"))
        self._load_model()

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            raise RuntimeError(f"{self.artifact.name}: used before load()")
        return self._tokenizer

    def warmup(self) -> None:
        for _ in self.tokens(self.encode("Hello"), GenerationParams(max_new_tokens=2)):
            pass

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text).ids)

    def tokens(self, prompt_ids: Sequence[int], params: GenerationParams) -> Iterator[int]:
        """Sampled token ids, at most ``max_new_tokens`` and never beyond the context window; stops after eos
        (which is yielded)."""
        rng = np.random.default_rng(params.seed)
        history = list(prompt_ids)
        budget = min(params.max_new_tokens, self.context_length - len(history))
        if budget <= 0:
            return
        logits, state = self._prefill(history)
        for step in range(budget):
            token = next_token(logits, params.sampling, history, rng)
            history.append(token)
            yield token
            if token == self.eos_token_id or step == budget - 1:
                return
            logits = self._decode(token, state)

    def stream(self, prompt_ids: Sequence[int], params: GenerationParams) -> Iterator[Chunk]:
        """Text chunks as tokens arrive; text that could still become a stop string is held back."""
        ids: list[int] = []
        text, sent = "", 0
        holdback = max((len(s) for s in params.stop), default=1) - 1
        reason: FinishReason = "length"
        generated = 0
        for token in self.tokens(prompt_ids, params):
            generated += 1
            if token == self.eos_token_id:
                reason = "stop"
                break
            ids.append(token)
            text = self.tokenizer.decode(ids)
            cut = _first_stop(text, params.stop, sent)
            if cut is not None:
                text, reason = text[:cut], "stop"
                break
            safe = len(text) - holdback
            if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its next bytes
                safe = min(safe, len(text.rstrip("\ufffd")))
            if safe > sent:
                yield Chunk(text[sent:safe])
                sent = safe
        yield Chunk(text[sent:], finish_reason=reason, prompt_tokens=len(prompt_ids), completion_tokens=generated)

    @property
    def info(self) -> dict[str, Any]:
        return {**super().info, "context_length": self.context_length}

    @abstractmethod
    def _prefill(self, prompt_ids: list[int]) -> tuple[npt.NDArray[np.float32], Any]:
        """Logits of the next token after the prompt, and the engine's cache state."""

    @abstractmethod
    def _decode(self, token: int, state: Any) -> npt.NDArray[np.float32]:
        """Append one token to the cache in ``state``; logits of the token after it."""


def _first_stop(text: str, stops: Sequence[str], start: int) -> int | None:
    """Index of the earliest stop string in ``text`` that ends after ``start`` (None when none occurs)."""
    hits = [i for s in stops if (i := text.find(s, max(0, start - len(s) + 1))) >= 0]
    return min(hits) if hits else None
