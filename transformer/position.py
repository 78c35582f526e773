"""Where a token is: attention itself ignores order, so a vector that depends on the position is added to each
token's embedding. Two kinds (`TransformerConfig.position`):

- ``sinusoidal`` ("Attention Is All You Need", section 3.5): fixed sines and cosines of geometrically spaced
  frequencies, ``PE(pos, 2i) = sin(pos / 10000^(2i/d))``, ``PE(pos, 2i+1) = cos(pos / 10000^(2i/d))``;
- ``learned`` (GPT-2): one trained vector per position.
"""

from __future__ import annotations

import math

import torch
from torch import nn

KINDS = ("sinusoidal", "learned")


def sinusoidal_table(length: int, d_model: int) -> torch.Tensor:
    """``[length, d_model]``: row ``pos`` is the encoding of position ``pos`` (computed in float64)."""
    if d_model % 2:
        raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
    position = torch.arange(length, dtype=torch.float64)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table.float()


class SinusoidalPositions(nn.Module):
    table: torch.Tensor

    def __init__(self, length: int, d_model: int) -> None:
        super().__init__()
        # a buffer, not a parameter, and not saved (persistent=False): it is rebuilt from the formula
        self.register_buffer("table", sinusoidal_table(length, d_model), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        """``[batch, seq]`` positions -> ``[batch, seq, d_model]``."""
        return self.table[position_ids]


class LearnedPositions(nn.Module):
    def __init__(self, length: int, d_model: int) -> None:
        super().__init__()
        self.table = nn.Embedding(length, d_model)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        """``[batch, seq]`` positions -> ``[batch, seq, d_model]``."""
        encoded: torch.Tensor = self.table(position_ids)
        return encoded


def positional_encoding(kind: str, length: int, d_model: int) -> nn.Module:
    """The encoding of ``kind`` (one of `KINDS`) for positions ``0 .. length - 1``."""
    if kind == "sinusoidal":
        return SinusoidalPositions(length, d_model)
    if kind == "learned":
        return LearnedPositions(length, d_model)
    raise ValueError(f"unknown position encoding {kind!r}; choose one of {KINDS}")
