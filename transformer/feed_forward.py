"""The position-wise feed-forward network ("Attention Is All You Need", section 3.3): the same two-layer MLP
applied to every position on its own, ``FFN(x) = W2 act(W1 x + b1) + b2``, ``d_model -> d_ff -> d_model``.
The activation is GELU (tanh approximation) as in GPT-2; the paper used ReLU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, d_ff)
        self.down = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., d_model]`` -> ``[..., d_model]`` (any leading shape: positions never mix)."""
        out: torch.Tensor = self.dropout(self.down(F.gelu(self.up(x), approximate="tanh")))
        return out
