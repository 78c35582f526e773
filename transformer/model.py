"""The language model: token embeddings plus positions, a stack of `Block`s, a final LayerNorm and an LM head
that shares its weights with the token embeddings (GPT-2's layout); `generate` samples with a KV cache
(nanoGPT's loop)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
from torch import nn

from transformer.block import Block
from transformer.moe import MixtureOfExperts, Routing
from transformer.position import positional_encoding

ARCHITECTURE = "transformer-lm"
"""How config.json names this model (``"architecture"``), so that a reader knows it is not an HF model."""


@dataclass
class TransformerConfig:
    vocab_size: int
    context_length: int = 256
    """Positions 0 .. context_length - 1 exist."""
    n_layers: int = 4
    n_heads: int = 4
    d_model: int = 256
    d_ff: int = 1024
    """Hidden size of the FFN (of each expert in a Mixture of Experts)."""
    dropout: float = 0.0
    position: str = "sinusoidal"
    """sinusoidal or learned (transformer/position.py)."""
    n_experts: int = 0
    """0: a dense FFN in every block; else a Mixture of Experts of that many FFNs in every block."""
    top_k: int = 2
    """Experts per token (MoE only)."""
    capacity_factor: float = 1.25
    """Expert buffer size while training, relative to a perfectly balanced load (MoE only)."""

    def to_dict(self) -> dict[str, Any]:
        """What config.json holds."""
        return {"architecture": ARCHITECTURE, **asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransformerConfig:
        if values.get("architecture") != ARCHITECTURE:
            raise ValueError(f"not a {ARCHITECTURE} config: architecture {values.get('architecture')!r}")
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


class LMOutput(NamedTuple):
    logits: torch.Tensor
    """``[batch, seq, vocab]``."""
    present: list[torch.Tensor]
    """key_0, value_0, key_1, value_1, ...: ``[batch, heads, past + seq, head_dim]``, the next call's ``past``."""
    attentions: torch.Tensor | None
    """``[layers, batch, heads, seq, past + seq]`` when asked for (``output_attentions``)."""
    routing: list[Routing]
    """One per layer for a Mixture of Experts; empty for a dense model."""

    @property
    def experts(self) -> torch.Tensor | None:
        """``[layers, batch, seq, top_k]``: the experts each token went to (None for a dense model)."""
        return torch.stack([r.experts for r in self.routing]) if self.routing else None


class TransformerLM(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.position = positional_encoding(config.position, config.context_length, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config.d_model, config.n_heads, config.d_ff, config.dropout, config.n_experts, config.top_k,
                  config.capacity_factor) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # tied: one matrix reads tokens in and scores them out
        self.apply(_init_weights)
        for name, param in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 * layers)
            if name.endswith(("attention.out.weight", "down.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past: list[torch.Tensor] | None = None,
                output_attentions: bool = False) -> LMOutput:
        """``input_ids [batch, seq]`` after ``past`` (the ``present`` of the previous call, or None).

        ``attention_mask [batch, past + seq]``: 1 for real tokens, 0 for padding (None: all real).
        ``position_ids [batch, seq]``: None counts on from the past's length (0 without a past); a row that is
        left-padded passes its own positions so that padding never shifts them.
        """
        batch, seq = input_ids.shape
        past_length = 0 if past is None else past[0].shape[2]
        if position_ids is None:
            position_ids = torch.arange(past_length, past_length + seq, device=input_ids.device).expand(batch, seq)
        x = self.dropout(self.embed(input_ids) + self.position(position_ids))
        mask = causal_mask(seq, past_length, attention_mask, input_ids.device)
        present: list[torch.Tensor] = []
        attentions: list[torch.Tensor] = []
        routing: list[Routing] = []
        for i, block in enumerate(self.blocks):
            layer_past = None if past is None else (past[2 * i], past[2 * i + 1])
            x, (key, value), weights, routed = block(x, mask, layer_past)
            present += [key, value]
            attentions.append(weights)
            routing += [routed] if routed is not None else []
        logits = self.lm_head(self.ln_f(x))
        return LMOutput(logits, present, torch.stack(attentions) if output_attentions else None, routing)

    def parameter_counts(self) -> dict[str, int]:
        """``total`` parameters (tied ones once) and ``active``: those one token uses (``top_k`` of the experts)."""
        total = sum(p.numel() for p in self.parameters())
        idle = 0
        for module in self.modules():
            if isinstance(module, MixtureOfExperts):
                per_expert = sum(p.numel() for p in module.experts[0].parameters())
                idle += (module.n_experts - module.top_k) * per_expert
        return {"total": total, "active": total - idle}

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``input_ids [batch, seq]`` followed by ``max_new_tokens`` sampled tokens (temperature 0: greedy).

        The prompt is read once; each new token then costs one position (its keys and values are appended to
        the cache), not a pass over the whole text."""
        if input_ids.shape[1] + max_new_tokens > self.config.context_length:
            raise ValueError(f"{input_ids.shape[1]} + {max_new_tokens} tokens exceed the context length "
                             f"{self.config.context_length}")
        out = self(input_ids)
        for step in range(max_new_tokens):
            logits = out.logits[:, -1]
            if temperature == 0:
                token = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:  # keep the k most likely tokens
                    kth = logits.topk(min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                token = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
            input_ids = torch.cat([input_ids, token], dim=1)
            if step + 1 < max_new_tokens:
                out = self(token, past=out.present)
        return input_ids


def causal_mask(seq: int, past_length: int, attention_mask: torch.Tensor | None,
                device: torch.device) -> torch.Tensor:
    """``[batch or 1, 1, seq, past + seq]`` bool: query i (at index past + i) sees keys 0 .. past + i, minus
    padding."""
    query = torch.arange(seq, device=device)[:, None] + past_length
    key = torch.arange(past_length + seq, device=device)[None, :]
    mask = (key <= query)[None, None]
    if attention_mask is not None:
        mask = mask & attention_mask[:, None, None, :].bool()
    return mask


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: normal(0, 0.02) weights, zero biases (LayerNorm keeps ones and zeros)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
