"""Text generation: ``load()``, ``warmup()``, ``encode()``, ``tokens()``, ``stream()``, ``info``.

Each runtime implements two steps over a `KVCache` that may hold several sequences: ``_prefill(prompts) ->
(logits per prompt, their cache)``, all prompts in one call, left-padded, and ``_decode(one token per row, cache)
-> logits per row``. Sampling, stop strings, eos and the context limit live in `Sequence`, once; `Scheduler`
prefills the prompts that arrive together in one call and decodes many sequences together, ``stream()`` decodes
one on its own.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping
from collections.abc import Sequence as Ids
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from app.runtimes import Runtime
from app.tasks.base import Model
from app.tasks.generation.cache import KVCache
from app.tasks.generation.chat import ChatTemplate, ChatTemplateError
from app.tasks.generation.sampling import choose
from app.tasks.generation.sequence import Chunk, GenerationParams, Sequence
from contract import Artifact


class Generator(Model):
    """A loaded causal LM; HTTP never reaches below this interface."""

    def __init__(self, artifact: Artifact, runtime: Runtime) -> None:
        super().__init__(artifact, runtime)
        generation = artifact.manifest.get("generation", {})
        self.context_length = int(generation.get("context_length", artifact.max_length))
        eos = generation.get("eos_token_id")
        self.eos_token_id: int | None = int(eos) if isinstance(eos, int) else None
        self._tokenizer: Tokenizer | None = None
        self.chat_template: ChatTemplate | None = None

    def load(self) -> None:
        self._tokenizer = Tokenizer.from_file(str(self.artifact.hf_dir / "tokenizer.json"))
        self.chat_template = ChatTemplate.from_hf_dir(self.artifact.hf_dir)
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

    def encode_chat(self, messages: Ids[Mapping[str, str]]) -> list[int]:
        """The token ids of the prompt for the assistant's next turn (the chat template renders the special
        tokens itself, so none are added); `ChatTemplateError` when the model has no template or it refuses."""
        if self.chat_template is None:
            raise ChatTemplateError(f"model {self.artifact.name!r} has no chat template: use /v1/completions or "
                                    "/v1/generate with a plain prompt")
        return list(self.tokenizer.encode(self.chat_template.render(messages), add_special_tokens=False).ids)

    def sequence(self, prompt_ids: Ids[int], params: GenerationParams) -> Sequence:
        """A new generation after ``prompt_ids``, never beyond the context window."""
        return Sequence(prompt_ids, params, self.tokenizer, self.eos_token_id, self.context_length)

    def tokens(self, prompt_ids: Ids[int], params: GenerationParams) -> Iterator[int]:
        """Sampled token ids until the sequence ends (eos, which is yielded, a stop string, the budget)."""
        sequence = self.sequence(prompt_ids, params)
        for _ in self._steps(sequence):
            yield sequence.history[-1]

    def stream(self, prompt_ids: Ids[int], params: GenerationParams) -> Iterator[Chunk]:
        """One generation on its own, as text chunks (the service batches generations in `Scheduler`)."""
        sequence = self.sequence(prompt_ids, params)
        for text in self._steps(sequence):
            if text:
                yield Chunk(text)
        yield sequence.final()

    def prefill(self, sequences: list[Sequence]) -> tuple[list[str], KVCache]:
        """Read the prompts of ``sequences`` in one model call and push each one's first token: the text each
        adds, and the cache of their rows (in that order)."""
        logits, cache = self._prefill([s.history for s in sequences])
        return _push(sequences, logits), cache

    def decode(self, sequences: list[Sequence], cache: KVCache) -> list[str]:
        """One step for every row of ``cache`` (``sequences`` in its row order): the text each row adds."""
        tokens = np.fromiter((s.history[-1] for s in sequences), np.int64, len(sequences))
        return _push(sequences, self._decode(tokens, cache))

    def _steps(self, sequence: Sequence) -> Iterator[str]:
        """Decode ``sequence`` alone until it ends; the text of each step."""
        if sequence.finish_reason is not None:
            return
        texts, cache = self.prefill([sequence])
        yield texts[0]
        while sequence.finish_reason is None:
            yield self.decode([sequence], cache)[0]

    def _info(self) -> dict[str, Any]:
        return {"context_length": self.context_length}

    @abstractmethod
    def _load_model(self) -> None: ...

    @abstractmethod
    def _prefill(self, prompts: list[list[int]]) -> tuple[npt.NDArray[np.float32], KVCache]:
        """Read ``prompts`` in one call (`left_pad`: a single prompt, or prompts of one length, need no padding):
        logits ``[rows, vocab]`` of the next token after each, and a cache holding their rows."""

    @abstractmethod
    def _decode(self, tokens: npt.NDArray[np.int64], cache: KVCache) -> npt.NDArray[np.float32]:
        """Append ``tokens`` (one per row) to the rows of ``cache``; logits ``[rows, vocab]`` of the next ones."""


def _push(sequences: list[Sequence], logits: npt.NDArray[np.float32]) -> list[str]:
    """Sample each row's next token with its own parameters and generator and push it to its sequence."""
    picks = choose(logits, [s.sampling for s in sequences], [s.history for s in sequences], [s.rng for s in sequences])
    return [sequence.push(token) for sequence, token in zip(sequences, picks.tolist(), strict=True)]
