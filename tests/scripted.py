"""A generator without a model: it emits a fixed token script, so decoding loops can be tested exactly."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer, models, pre_tokenizers

from app.runtimes import create_runtime
from app.tasks.generation.cache import KVCache, left_pad
from app.tasks.generation.generator import Generator
from contract import Artifact


class Scripted(Generator):
    """One-hot logits for ``script[position - 1]`` at each row's position (so after a one-token prompt the
    script is followed from its start); a word-level tokenizer (decoded words joined by spaces). Records the
    prompt lengths of every prefill call and the rows of every decode step, and sleeps ``delay`` seconds in each
    step."""

    WORDS = ("<eos>", "a", "b", "stop", "c")

    def __init__(self, script: list[int], context: int = 64, delay: float = 0.0) -> None:
        manifest = {"name": "s", "task": "text-generation", "max_length": context, "hf_dir": "hf",
                    "generation": {"context_length": context, "eos_token_id": 0}}
        super().__init__(Artifact(path=Path("."), manifest=manifest), create_runtime("onnx", "cpu", 1))
        self.script = script
        self.delay = delay
        self.steps: list[int] = []
        self.prefills: list[list[int]] = []
        tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(self.WORDS)}, unk_token="a"))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        self._tokenizer = tokenizer

    def _load_model(self) -> None:
        raise AssertionError("not used")

    def _logits(self, positions: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        out = np.full((len(positions), len(self.WORDS)), -10.0, np.float32)
        picks = [self.script[min(int(p) - 1, len(self.script) - 1)] for p in positions]
        out[np.arange(len(positions)), picks] = 10.0
        return out

    def _prefill(self, prompts: list[list[int]]) -> tuple[npt.NDArray[np.float32], KVCache]:
        self.prefills.append([len(prompt) for prompt in prompts])
        mask = left_pad(prompts)[1]
        cache = KVCache([], mask, mask.sum(axis=1))
        return self._logits(cache.positions), cache

    def _decode(self, tokens: npt.NDArray[np.int64], cache: KVCache) -> npt.NDArray[np.float32]:
        self.steps.append(len(tokens))
        time.sleep(self.delay)
        cache.advance([], cache.step_inputs()[0])
        return self._logits(cache.positions)
