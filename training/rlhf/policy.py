"""The PPO policy: a causal LM with a scalar value head on its last hidden state (one trunk for both, as in Ziegler
et al. 2019), and the frozen reference copy the KL penalty is measured against."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from contract import GENERATION, Artifact, open_artifact


def disable_dropout(model: nn.Module) -> nn.Module:
    """p = 0 in every dropout: the logprobs of a rollout and of its PPO epochs then come from one distribution."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def frozen_reference(lm: nn.Module) -> nn.Module:
    """A copy of ``lm`` that no optimiser sees: eval mode, no gradients."""
    reference = copy.deepcopy(lm).eval()
    reference.requires_grad_(False)
    return reference


class PolicyWithValueHead(nn.Module):
    """``lm`` plus ``value_head``: hidden state -> V(s), the expected return from the state before each token."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = disable_dropout(lm)
        hidden = int(lm.config.hidden_size)  # type: ignore[union-attr,arg-type]
        self.value_head = nn.Linear(hidden, 1)
        nn.init.normal_(self.value_head.weight, std=1.0 / (hidden + 1))
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits ``[batch, seq, vocab]``, values ``[batch, seq]``)."""
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      output_hidden_states=True)
        return out.logits, self.value_head(out.hidden_states[-1]).squeeze(-1)


def load_generator(folder: Path) -> tuple[Any, PreTrainedTokenizerFast, Artifact]:
    """The causal LM (train mode off, dropout off) and tokenizer of a verified text-generation artifact."""
    artifact = open_artifact(folder)
    if artifact.task != GENERATION:
        raise ValueError(f"{folder}: task {artifact.task!r}, PPO needs a text-generation artifact")
    lm = AutoModelForCausalLM.from_pretrained(artifact.hf_dir, dtype=torch.float32)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(artifact.hf_dir)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{folder}: the tokenizer has no eos token")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return disable_dropout(lm).eval(), tokenizer, artifact
