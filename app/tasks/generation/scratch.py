"""Generation on PyTorch for a model built from the parts of transformer/ (config.json says ``"architecture":
"transformer-lm"``): `TransformerLM` takes the batch's `KVCache` tensors as its ``past`` and returns the
``present`` ones, and serves attention maps (its attention computes the weights anyway) and, for a Mixture of
Experts, the experts each token was routed to."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from app.runtimes.torch import TorchRuntime
from app.tasks.generation.attention import AttendingGenerator, AttentionForward, AttentionOutputs
from app.tasks.generation.cache import KVCache, left_pad
from app.tasks.generation.torch import TorchKVCache
from contract import Artifact
from transformer.model import TransformerConfig, TransformerLM


def build(config: dict[str, Any]) -> TransformerLM:
    return TransformerLM(TransformerConfig.from_dict(config))


class ScratchGenerator(AttendingGenerator):
    runtime: TorchRuntime
    model: TransformerLM

    def __init__(self, artifact: Artifact, runtime: TorchRuntime) -> None:
        super().__init__(artifact, runtime)

    def _load_model(self) -> None:
        model = self.runtime.load_module(build, self.artifact.hf_dir)
        assert isinstance(model, TransformerLM)
        self.model = model

    def _prefill(self, prompts: list[list[int]]) -> tuple[npt.NDArray[np.float32], KVCache]:
        ids, mask, positions = left_pad(prompts)
        tensor = self.runtime.tensor
        padding = () if mask.all() else (tensor(mask), tensor(positions))
        with torch.inference_mode():
            out = self.model(tensor(ids), *padding)
        cache = TorchKVCache(out.present, mask, mask.sum(axis=1))
        return self.runtime.numpy(out.logits[:, -1]), cache

    def _decode(self, tokens: npt.NDArray[np.int64], cache: KVCache) -> npt.NDArray[np.float32]:
        mask, positions = cache.step_inputs()
        tensor = self.runtime.tensor
        with torch.inference_mode():
            out = self.model(tensor(tokens[:, None]), tensor(mask), tensor(positions), cache.past)
        cache.advance(out.present, mask)
        return self.runtime.numpy(out.logits[:, -1])

    def _build_attention(self) -> AttentionForward:
        def forward(input_ids: npt.NDArray[np.int64]) -> AttentionOutputs:
            with torch.inference_mode():
                out = self.model(self.runtime.tensor(input_ids), output_attentions=True)
            assert out.attentions is not None
            experts = out.experts
            return AttentionOutputs(self.runtime.numpy(out.logits[0, -1]), self.runtime.numpy(out.attentions[:, 0]),
                                    None if experts is None else experts[:, 0].cpu().numpy())

        return forward
