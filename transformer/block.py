"""One Transformer layer, pre-LN as in GPT-2: ``x + Attention(LN(x))``, then ``x + FFN(LN(x))``, the FFN dense
or a Mixture of Experts. (The original Transformer normalised after each residual addition; normalising before
keeps the residual path an identity, which trains deep stacks without warm-up tricks.)"""

from __future__ import annotations

import torch
from torch import nn

from transformer.attention import MultiHeadAttention
from transformer.feed_forward import FeedForward
from transformer.moe import MixtureOfExperts, Routing


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, n_experts: int = 0,
                 top_k: int = 2, capacity_factor: float = 1.25) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attention = MultiHeadAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn: FeedForward | MixtureOfExperts = (
            MixtureOfExperts(d_model, d_ff, n_experts, top_k, capacity_factor, dropout) if n_experts
            else FeedForward(d_model, d_ff, dropout))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor, Routing | None]:
        """x ``[batch, seq, d_model]`` -> x, this layer's keys and values (past + new), its attention weights, and
        its `Routing` (None for a dense FFN)."""
        attended, present, weights = self.attention(self.ln1(x), mask, past)
        x = x + self.dropout(attended)
        if isinstance(self.ffn, MixtureOfExperts):
            mixed, routing = self.ffn(self.ln2(x))
            return x + mixed, present, weights, routing
        return x + self.ffn(self.ln2(x)), present, weights, None
