"""A Mixture-of-Experts feed-forward layer (Shazeer et al. 2017; GShard; Switch Transformer; Mixtral's gate).

``n_experts`` feed-forward networks; a linear router scores them for each token and the token goes to its
``top_k`` best. Its output is the sum of those experts' outputs weighted by a softmax over the ``top_k``
chosen router scores. Only ``top_k`` experts run per token, so parameters grow with ``n_experts`` while the
compute per token stays that of ``top_k`` FFNs.

While training, each expert takes at most ``capacity = ceil(capacity_factor * tokens * top_k / n_experts)``
assignments per batch (fixed-size expert buffers, as GShard and Switch); assignments beyond it are dropped (that
expert adds nothing for that token; the residual connection carries it) and counted. A first choice always
queues before any second choice. In eval mode no assignment is dropped: a token's output then never depends on
the other tokens of its batch (the KV-cache decoder and the batched server rely on that).

The load-balancing loss (Switch, eq. 4, with the top-k assignments): ``n_experts * sum_e f_e * P_e``, ``f_e`` the
fraction of assignments given to expert e, ``P_e`` the mean router probability of e; it is 1 when both are
uniform, and pushes the router towards balance through ``P_e``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from transformer.feed_forward import FeedForward


class Routing(NamedTuple):
    """What the router did in one layer."""

    experts: torch.Tensor
    """``[batch, seq, top_k]`` int64: the experts each token was sent to, best first."""
    aux_loss: torch.Tensor
    """Scalar: the load-balancing loss (1.0 when perfectly balanced)."""
    load: torch.Tensor
    """``[n_experts]``: the fraction of the (token, choice) assignments each expert was given (sums to 1)."""
    dropped: torch.Tensor
    """Scalar int64: assignments beyond an expert's capacity (always 0 in eval mode)."""


class MixtureOfExperts(nn.Module):
    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int, capacity_factor: float = 1.25,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k {top_k} must be between 1 and n_experts {n_experts}")
        self.n_experts, self.top_k, self.capacity_factor = n_experts, top_k, capacity_factor
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(d_model, d_ff, dropout) for _ in range(n_experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Routing]:
        """``[batch, seq, d_model]`` -> the same shape, and the `Routing`."""
        batch, seq, d_model = x.shape
        tokens = x.reshape(-1, d_model)  # [T, d]: routing looks at each token alone
        logits = self.router(tokens)  # [T, E]
        top_logits, chosen = logits.topk(self.top_k, dim=-1)  # [T, k], best first
        gates = top_logits.softmax(dim=-1)  # weights of the k chosen experts, summing to 1
        assigned = F.one_hot(chosen, self.n_experts)  # [T, k, E]: 1 where choice k of token T is expert E
        routed = assigned.bool()
        if self.training:
            routed = routed & self.within_capacity(assigned)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token, slot = torch.nonzero(routed[:, :, e], as_tuple=True)  # the assignments expert e takes
            out = out.index_add(0, token, gates[token, slot, None] * expert(tokens[token]))
        load = assigned.float().mean(dim=(0, 1))  # f_e
        importance = logits.softmax(dim=-1).mean(dim=0)  # P_e
        aux_loss = self.n_experts * (load * importance).sum()
        dropped = assigned.sum() - routed.sum()
        experts = chosen.reshape(batch, seq, self.top_k)
        return out.reshape(batch, seq, d_model), Routing(experts, aux_loss, load, dropped)

    def within_capacity(self, assigned: torch.Tensor) -> torch.Tensor:
        """``[T, k, E]`` one-hot assignments -> bool, True where the assignment fits in its expert's buffer.

        Each expert's queue holds every token's first choice, then every token's second choice, and so on (a
        token loses its second expert before any token loses its first); the first ``capacity`` get in."""
        count, k, n = assigned.shape
        capacity = math.ceil(self.capacity_factor * count * k / n)
        queue = assigned.transpose(0, 1).reshape(k * count, n)  # choice-major order
        place = (queue.cumsum(dim=0) - 1).reshape(k, count, n).transpose(0, 1)  # [T, k, E]: place in the queue
        fits: torch.Tensor = place < capacity
        return fits
