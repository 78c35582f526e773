"""Attention ("Attention Is All You Need", section 3.2): scaled dot-product attention, and multi-head
self-attention with a KV cache for decoding one token at a time."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                                 dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d) v, and the softmax itself.

    q ``[..., queries, d]``, k and v ``[..., keys, d]``; ``mask`` (bool, broadcastable to ``[..., queries, keys]``)
    is True where a query may look at a key, as in ``torch.nn.functional.scaled_dot_product_attention``.
    Returns the output ``[..., queries, d]`` and the weights ``[..., queries, keys]``: each row sums to 1 and is 0
    where masked. ``dropout`` drops weights of the output only (the weights returned are the distribution).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # how well each query matches each key
    if mask is not None:
        # the dtype's lowest number rather than -inf: its exp is exactly 0 beside any real score, and a row with
        # no visible key at all (a padding query) gets uniform weights instead of NaN
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    mixed = F.dropout(weights, p=dropout) if dropout > 0.0 else weights
    return mixed @ v, weights


class MultiHeadAttention(nn.Module):
    """Self-attention with ``n_heads`` heads of ``d_model / n_heads`` dimensions each.

    One linear layer makes queries, keys and values (laid out as ``nn.MultiheadAttention.in_proj_weight``: q, k,
    v); the heads attend independently, their outputs are concatenated and projected back to ``d_model``.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
        self.n_heads, self.head_dim, self.dropout = n_heads, d_model // n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """x ``[batch, seq, d_model]``; ``past``: the keys and values of earlier positions ``[batch, heads, past,
        head_dim]`` (the KV cache). Returns the output ``[batch, seq, d_model]``, the keys and values of every
        position so far ``[batch, heads, past + seq, head_dim]`` (the next call's ``past``) and the weights
        ``[batch, heads, seq, past + seq]``. ``mask``: True where a query may attend, ``[.., seq, past + seq]``."""
        batch, seq, d_model = x.shape
        # [batch, seq, 3 * d_model] -> three [batch, heads, seq, head_dim]
        q, k, v = (t.reshape(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
                   for t in self.qkv(x).split(d_model, dim=-1))
        if past is not None:  # earlier positions were computed already: append the new ones
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        heads, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout if self.training else 0.0)
        joined = heads.transpose(1, 2).reshape(batch, seq, d_model)  # concatenate the heads
        return self.out(joined), (k, v), weights
