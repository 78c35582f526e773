"""Rollouts: k new tokens for a batch of left-padded prompts, drawn with the server's sampling semantics, then one
forward pass that scores them (token logprobs, values, entropies).

`next_token_probs` is the torch twin of app/tasks/generation/sampling.py's ``probabilities`` (temperature, then
top-k, then top-p over the sorted probabilities; ties kept in index order); tests/unit/test_ppo.py checks that both
give the same distribution. app/ is not imported: training and serving meet only at the artifact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from training.config import SamplingConfig
from training.rlhf.ppo import entropy, token_logprobs

EOS_BLOCKED = -1e9
"""The eos logit while fewer than ``min_new_tokens`` tokens were drawn (finite: entropies stay free of 0 * inf)."""


def next_token_probs(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """The distribution each row's next token is drawn from (temperature > 0): logits ``[rows, vocab]``."""
    scores = logits.double() / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, before >= top_p)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample_next(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row: arg-max when temperature is 0, else a draw from `next_token_probs`."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    probs = next_token_probs(logits, sampling.temperature, sampling.top_k, sampling.top_p)
    return torch.multinomial(probs.float(), 1, generator=generator).squeeze(-1)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) ``[batch, longest]``, each prompt right-aligned so that generation appends in step."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if not prompt:
            raise ValueError("empty prompt")
        ids[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding does not shift them)."""
    return (mask.cumsum(dim=-1) - 1).clamp(min=0)


@dataclass
class Rollout:
    """A batch of prompts and their sampled continuations; ``response_mask`` is 1 up to and including each row's
    first eos (when stopping at eos), 0 after it. The first ``min_new_tokens`` tokens were drawn with eos blocked:
    every logprob of them (policy and reference alike) is taken under that same constraint."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    eos_id: int = -1
    min_new_tokens: int = 0

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, torch.ones_like(self.response_ids)], dim=1)

    def select(self, rows: torch.Tensor) -> Rollout:
        return Rollout(self.prompt_ids[rows], self.prompt_mask[rows], self.response_ids[rows],
                       self.response_mask[rows], self.eos_id, self.min_new_tokens)

    def constrain(self, logits: torch.Tensor) -> torch.Tensor:
        """Response-aligned logits ``[batch, k, vocab]`` with eos blocked at the first ``min_new_tokens`` steps."""
        if self.min_new_tokens <= 0:
            return logits
        logits = logits.clone()
        logits[:, : self.min_new_tokens, self.eos_id] = EOS_BLOCKED
        return logits

    def texts(self, tokenizer: Any, with_prompt: bool = True) -> list[str]:
        """Decoded prompt + continuation (or the continuation alone); sentences an eos separates (when generation
        goes on after eos) are joined by a space."""
        out = []
        for row in range(len(self.response_ids)):
            ids = self.response_ids[row][self.response_mask[row].bool()].tolist()
            if with_prompt:
                ids = self.prompt_ids[row][self.prompt_mask[row].bool()].tolist() + ids
            pieces: list[list[int]] = [[]]
            for token in ids:
                if token == self.eos_id:
                    pieces.append([])
                else:
                    pieces[-1].append(token)
            decoded = (tokenizer.decode(piece, skip_special_tokens=True).strip() for piece in pieces if piece)
            out.append(" ".join(text for text in decoded if text))
        return out


@torch.no_grad()
def generate(lm: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, sampling: SamplingConfig,
             eos_id: int, generator: torch.Generator | None = None) -> Rollout:
    """``sampling.max_new_tokens`` tokens per row with a KV cache, eos blocked for the first
    ``sampling.min_new_tokens``; after a row's eos (``stop_at_eos``) its tokens are eos padding, outside
    ``response_mask``."""
    ids, mask, pos = prompt_ids, prompt_mask, positions(prompt_mask)
    cache = DynamicCache()
    done = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
    tokens, valid = [], []
    for step in range(sampling.max_new_tokens):
        out = lm(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        cache = out.cache
        logits = out.logits[:, -1].float()
        if step < sampling.min_new_tokens:
            logits[:, eos_id] = EOS_BLOCKED
        token = torch.where(done, torch.full_like(done, eos_id, dtype=torch.long),
                            sample_next(logits, sampling, generator))
        tokens.append(token)
        valid.append(~done)
        if sampling.stop_at_eos:
            done = done | (token == eos_id)
        ids, pos = token[:, None], pos[:, -1:] + 1
        mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
    return Rollout(prompt_ids, prompt_mask, torch.stack(tokens, dim=1), torch.stack(valid, dim=1).float(), eos_id,
                   min(sampling.min_new_tokens, sampling.max_new_tokens))


def response_logits(model: nn.Module, rollout: Rollout) -> torch.Tensor:
    """Logits that predicted each response token ``[batch, k, vocab]`` (a plain causal LM), constrained as drawn."""
    width = rollout.prompt_ids.shape[1]
    mask = rollout.attention_mask
    logits: torch.Tensor = model(input_ids=rollout.input_ids, attention_mask=mask, position_ids=positions(mask)).logits
    return rollout.constrain(logits[:, width - 1:-1])


@dataclass
class Scored:
    """Per response token: logprob under the sampling temperature, value, entropy of the policy."""

    logprobs: torch.Tensor
    values: torch.Tensor
    entropy: torch.Tensor


def score(policy: nn.Module, rollout: Rollout, temperature: float) -> Scored:
    """One forward pass of a `PolicyWithValueHead` over prompt + response (gradients as the caller decides)."""
    width = rollout.prompt_ids.shape[1]
    mask = rollout.attention_mask
    logits, values = policy(rollout.input_ids, mask, positions(mask))
    logits = rollout.constrain(logits[:, width - 1:-1]) / temperature
    return Scored(token_logprobs(logits, rollout.response_ids), values[:, width - 1:-1], entropy(logits))


@torch.no_grad()
def reference_logprobs(reference: nn.Module, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """Logprobs of the response tokens under the frozen reference (same temperature as the policy)."""
    return token_logprobs(response_logits(reference, rollout) / temperature, rollout.response_ids)
