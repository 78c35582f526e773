"""Generation on PyTorch: the HF causal LM over a `DynamicCache` built from the batch's `KVCache` tensors, and
attention maps from an eager view of the same model (shared weights)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from app.runtimes.torch import TorchRuntime
from app.tasks.generation.attention import AttendingGenerator, AttentionForward, AttentionOutputs
from app.tasks.generation.cache import KVCache, left_pad
from contract import Artifact


class TorchGenerator(AttendingGenerator):
    runtime: TorchRuntime

    def __init__(self, artifact: Artifact, runtime: TorchRuntime) -> None:
        super().__init__(artifact, runtime)

    def _load_model(self) -> None:
        self.model = self.runtime.load(AutoModelForCausalLM, self.artifact.hf_dir)

    def _prefill(self, prompts: list[list[int]]) -> tuple[npt.NDArray[np.float32], KVCache]:
        ids, mask, positions = left_pad(prompts)
        tensor = self.runtime.tensor
        padding = {} if mask.all() else {"attention_mask": tensor(mask), "position_ids": tensor(positions)}
        with torch.inference_mode():
            out = self.model(input_ids=tensor(ids), cache=DynamicCache(), use_cache=True, logits_to_keep=1,
                             **padding)
        cache = TorchKVCache(_tensors(out.cache), mask, mask.sum(axis=1))
        return self.runtime.numpy(out.logits[:, -1]), cache

    def _decode(self, tokens: npt.NDArray[np.int64], cache: KVCache) -> npt.NDArray[np.float32]:
        mask, positions = cache.step_inputs()
        past = DynamicCache([(cache.past[i], cache.past[i + 1]) for i in range(0, len(cache.past), 2)])
        tensor = self.runtime.tensor
        with torch.inference_mode():
            out = self.model(input_ids=tensor(tokens[:, None]), attention_mask=tensor(mask),
                             position_ids=tensor(positions), cache=past, use_cache=True, logits_to_keep=1)
        cache.advance(_tensors(out.cache), mask)
        return self.runtime.numpy(out.logits[:, -1])

    def _build_attention(self) -> AttentionForward:
        return EagerAttention(self.runtime, self.model)


class EagerAttention:
    """``input_ids [1, seq]`` -> next-token logits ``[vocab]``, attentions ``[layers, heads, seq, seq]``, from an
    eager-attention view of the generation model (generation keeps sdpa)."""

    def __init__(self, runtime: TorchRuntime, model: Any) -> None:
        self.runtime = runtime
        self.model = runtime.eager_view(model)

    def __call__(self, input_ids: npt.NDArray[np.int64]) -> AttentionOutputs:
        with torch.inference_mode():
            out = self.model(input_ids=self.runtime.tensor(input_ids), output_attentions=True, logits_to_keep=1)
            return AttentionOutputs(self.runtime.numpy(out.logits[0, -1]),
                                    self.runtime.numpy(torch.stack(out.attentions)[:, 0]))


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
