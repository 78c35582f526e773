"""The torch attention forward of a generator: an eager-attention view of its model.

Generation keeps the faster sdpa attention, which returns no attention weights; this view is a copy of the
module tree that shares every parameter and buffer with the generation model (no second copy of the
weights) and runs eager attention."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import numpy.typing as npt
import torch


class EagerAttention:
    """``input_ids [1, seq]`` -> next-token logits ``[vocab]``, attentions ``[layers, heads, seq, seq]``."""

    def __init__(self, model: Any, device: str) -> None:
        shared = {id(tensor): tensor for tensor in (*model.parameters(), *model.buffers())}
        self.model = copy.deepcopy(model, shared)
        self.model.set_attn_implementation("eager")
        self.device = device

    def __call__(self, input_ids: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(input_ids).to(self.device), output_attentions=True,
                             logits_to_keep=1)
            logits: npt.NDArray[np.float32] = out.logits[0, -1].float().cpu().numpy()
            attentions: npt.NDArray[np.float32] = torch.stack(out.attentions)[:, 0].float().cpu().numpy()
        return logits, attentions
