"""PyTorch generation: the HF causal LM with its own DynamicCache per request."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.utils import logging as hf_logging

from app.backends.generation.base import Generator

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchGenerator(Generator):
    kind = "torch"

    def _load_model(self) -> None:
        if self.device == "cpu" and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped upstream
        model: Any = AutoModelForCausalLM.from_pretrained(
            self.artifact.hf_dir, dtype=DTYPES[self.dtype], local_files_only=True)
        self.model = model.to(self.device).eval()
        log.info("%s: torch generator on %s (%s)", self.artifact.name, self.device, self.dtype)

    def _step(self, ids: list[int], cache: DynamicCache) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.device), cache=cache, use_cache=True,
                             logits_to_keep=1)
            logits: npt.NDArray[np.float32] = out.logits[0, -1].float().cpu().numpy()
        return logits

    def _prefill(self, prompt_ids: list[int]) -> tuple[npt.NDArray[np.float32], Any]:
        cache = DynamicCache()
        return self._step(prompt_ids, cache), cache

    def _decode(self, token: int, state: Any) -> npt.NDArray[np.float32]:
        return self._step([token], state)

    def _runtime_info(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "torch": torch.__version__}
