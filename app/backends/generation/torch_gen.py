"""PyTorch generation: the HF causal LM over a `DynamicCache` built from the batch's `KVCache` tensors."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.utils import logging as hf_logging

from app.backends.generation.attention import AttendingGenerator, AttentionForward
from app.backends.generation.cache import KVCache
from app.backends.generation.torch_attention import EagerAttention

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchGenerator(AttendingGenerator):
    kind = "torch"

    def _load_model(self) -> None:
        if self.device == "cpu" and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped upstream
        model: Any = AutoModelForCausalLM.from_pretrained(
            self.artifact.hf_dir, dtype=DTYPES[self.dtype], local_files_only=True, use_safetensors=True)
        self.model = model.to(self.device).eval()
        log.info("%s: torch generator on %s (%s)", self.artifact.name, self.device, self.dtype)

    def _prefill(self, prompt_ids: list[int]) -> tuple[npt.NDArray[np.float32], KVCache]:
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([prompt_ids], device=self.device), cache=DynamicCache(),
                             use_cache=True, logits_to_keep=1)
        length = len(prompt_ids)
        cache = TorchKVCache(_tensors(out.cache), np.ones((1, length), np.int64), np.full(1, length, np.int64))
        return _numpy(out.logits[0, -1]), cache

    def _decode(self, tokens: npt.NDArray[np.int64], cache: KVCache) -> npt.NDArray[np.float32]:
        mask, positions = cache.step_inputs()
        past = DynamicCache([(cache.past[i], cache.past[i + 1]) for i in range(0, len(cache.past), 2)])
        with torch.inference_mode():
            out = self.model(input_ids=self._tensor(tokens[:, None]), attention_mask=self._tensor(mask),
                             position_ids=self._tensor(positions), cache=past, use_cache=True, logits_to_keep=1)
        cache.advance(_tensors(out.cache), mask)
        return _numpy(out.logits[:, -1])

    def _tensor(self, array: npt.NDArray[np.int64]) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device)

    def _build_attention(self) -> AttentionForward:
        return EagerAttention(self.model, self.device)

    def _runtime_info(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "torch": torch.__version__}


class TorchKVCache(KVCache):
    """`KVCache` over torch tensors (on the model's device)."""

    @staticmethod
    def _cat(tensors: list[Any], axis: int = 0) -> Any:
        return torch.cat(tensors, dim=axis)

    @staticmethod
    def _zeros(like: Any, shape: tuple[int, ...]) -> Any:
        return like.new_zeros(shape)

    @staticmethod
    def _contiguous(tensor: Any) -> Any:
        return tensor.contiguous()


def _tensors(cache: Any) -> list[torch.Tensor]:
    return [tensor for layer in cache.layers for tensor in (layer.keys, layer.values)]


def _numpy(logits: torch.Tensor) -> npt.NDArray[np.float32]:
    result: npt.NDArray[np.float32] = logits.float().cpu().numpy()
    return result
