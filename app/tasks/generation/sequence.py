"""One generation between decoding steps: its sampling state, token budget, text and why it ended.

Text is decoded incrementally (a short window of tokens per step, never the whole list), and text that could
still become a stop string is held back until it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence as Ids
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from tokenizers import Tokenizer

from app.tasks.generation.sampling import SamplingParams

FinishReason = Literal["length", "stop", "timeout"]


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


class Detokenizer:
    """The text of a growing list of token ids. Each new token decodes a window that starts at the last
    complete piece of text (so leading-space rules see the same context) and ends with the new token; text
    is released once it no longer ends with an incomplete UTF-8 sequence."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.start = 0
        """The window starts here ..."""
        self.read = 0
        """... and its text up to here has been released."""
        self.released = ""
        """Decoded text of ids[start:read]."""

    def add(self, token: int) -> str:
        """Append ``token``; the text it completes ("" while a character is still incomplete)."""
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids[self.start:])
        if len(text) <= len(self.released) or text.endswith("\ufffd"):
            return ""
        new = text[len(self.released):]
        self.start, self.read = self.read, len(self.ids)
        self.released = self.tokenizer.decode(self.ids[self.start:self.read])
        return new

    def rest(self) -> str:
        """Text not released yet (an incomplete character at the end decodes as U+FFFD)."""
        return self.tokenizer.decode(self.ids[self.start:])[len(self.released):]


class Sequence:
    """A prompt and what has been generated after it, one token per `push`."""

    def __init__(self, prompt_ids: Ids[int], params: GenerationParams, tokenizer: Tokenizer,
                 eos_token_id: int | None, context_length: int) -> None:
        self.params = params
        self.prompt_tokens = len(prompt_ids)
        self.history = list(prompt_ids)
        self.rng = np.random.default_rng(params.seed)
        self.budget = min(params.max_new_tokens, context_length - len(prompt_ids))
        self.generated = 0
        self.finish_reason: FinishReason | None = None if self.budget > 0 else "length"
        self._eos = eos_token_id
        self._text = Detokenizer(tokenizer)
        self._unsent = ""
        self._cut = False
        """A stop string ended the text: what follows it is dropped."""
        self._holdback = max((len(s) for s in params.stop), default=1) - 1

    @property
    def sampling(self) -> SamplingParams:
        return self.params.sampling

    def push(self, token: int) -> str:
        """Record the next token; the text that is now safe to send (never part of a stop string)."""
        self.history.append(token)
        self.generated += 1
        if token == self._eos:
            self.finish_reason = "stop"
            return ""
        unsent = self._unsent + self._text.add(token)
        cut = _first_stop(unsent, self.params.stop)
        if cut is not None:
            self._unsent, self._cut, self.finish_reason = unsent[:cut], True, "stop"
            return ""
        if self.generated >= self.budget:
            self.finish_reason = "length"
        safe = max(0, len(unsent) - self._holdback)
        self._unsent = unsent[safe:]
        return unsent[:safe]

    def finish(self, reason: FinishReason) -> None:
        """End it early (e.g. ``timeout``); a sequence that has ended keeps its reason."""
        if self.finish_reason is None:
            self.finish_reason = reason

    def final(self) -> Chunk:
        """The last chunk: the text held back, the finish reason and the token counts."""
        rest = "" if self._cut else self._text.rest()
        return Chunk(self._unsent + rest, finish_reason=self.finish_reason or "length",
                     prompt_tokens=self.prompt_tokens, completion_tokens=self.generated)


def _first_stop(text: str, stops: Ids[str]) -> int | None:
    """Index of the earliest stop string in ``text`` (None when none occurs)."""
    hits = [i for s in stops if (i := text.find(s)) >= 0]
    return min(hits) if hits else None
