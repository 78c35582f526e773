"""PPO as a LightningModule with manual optimisation: each training step is one PPO iteration.

1. rollout: the policy continues a batch of prompts by k tokens (no gradients);
2. score: the reward model scores prompt + continuation; one pass of the policy gives the tokens' logprobs and
   values, one of the frozen reference their reference logprobs;
3. rewards: -beta * (log pi - log pi_ref) per token, plus the score on the last token; GAE advantages (whitened)
   and returns;
4. update: ``ppo_epochs`` passes over the batch in shuffled minibatches, each an optimiser step on the clipped
   policy loss + vf_coef * clipped value loss;
5. beta follows the adaptive KL controller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from training.config import PPOConfig, SamplingConfig
from training.rlhf.policy import PolicyWithValueHead, frozen_reference
from training.rlhf.ppo import KLController, gae, masked_mean, penalised_rewards, policy_loss, value_loss, whiten
from training.rlhf.rollout import Rollout, generate, left_pad, reference_logprobs, score

RewardFn = Callable[[list[str]], torch.Tensor]
"""texts (prompt + continuation) -> one score per text."""


class PPOTuner(L.LightningModule):
    """The policy (``lm`` + value head), its frozen reference (a copy of ``lm`` taken here) and the KL controller."""

    def __init__(self, lm: torch.nn.Module, tokenizer: Any, reward: RewardFn, ppo: PPOConfig,
                 sampling: SamplingConfig, seed: int = 0) -> None:
        super().__init__()
        if sampling.temperature <= 0:
            raise ValueError("PPO rollouts must sample: temperature > 0")
        if ppo.batch_size % ppo.minibatch_size:
            raise ValueError(f"batch_size {ppo.batch_size} is not a multiple of minibatch_size {ppo.minibatch_size}")
        self.automatic_optimization = False
        self.policy = PolicyWithValueHead(lm)
        self.reference = frozen_reference(lm)
        self.tokenizer, self.reward, self.ppo, self.sampling = tokenizer, reward, ppo, sampling
        self.kl = KLController(ppo.init_kl_coef, ppo.target_kl, ppo.kl_horizon)
        self.eos = int(tokenizer.eos_token_id)
        self.generator = torch.Generator().manual_seed(seed)
        self.samples_seen = 0
        self.history: list[dict[str, float]] = []

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.policy.parameters(), lr=self.ppo.learning_rate, eps=1e-5, weight_decay=0.0)

    def on_train_epoch_start(self) -> None:
        self.reference.eval()  # Lightning puts every submodule in train mode before the epoch

    def rollout(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> Rollout:
        self.policy.eval()
        rollout = generate(self.policy.lm, prompt_ids, prompt_mask, self.sampling, self.eos,
                           self.generator if prompt_ids.device.type == "cpu" else None)
        self.policy.train()
        return rollout

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        rollout = self.rollout(batch["prompt_ids"], batch["prompt_mask"])
        mask = rollout.response_mask
        scores = self.reward(rollout.texts(self.tokenizer)).to(mask.device)
        temperature = self.sampling.temperature
        with torch.no_grad():
            old = score(self.policy, rollout, temperature)
            ref = reference_logprobs(self.reference, rollout, temperature)
            rewards, kl = penalised_rewards(scores, old.logprobs, ref, mask, self.kl.value)
            advantages, returns = gae(rewards, old.values, mask, self.ppo.gamma, self.ppo.lam)
            advantages = whiten(advantages, mask)
        stats = self.update(rollout, old.logprobs, old.values * mask, advantages, returns)
        sequence_kl = float(kl.sum(dim=1).mean())
        self.samples_seen += len(scores)
        logged = {"reward": float(scores.mean()), "kl": sequence_kl, "kl_coef": self.kl.value,
                  "entropy": float(masked_mean(old.entropy, mask)), "response_length": float(mask.sum(1).mean()),
                  "samples": float(self.samples_seen), "return": float(masked_mean(returns, mask)), **stats}
        self.kl.update(sequence_kl, len(scores))
        self.history.append(logged)
        self.log_dict({f"ppo/{key}": value for key, value in logged.items()}, on_step=True, prog_bar=False)
        self.log("reward", logged["reward"], prog_bar=True)
        self.log("kl", sequence_kl, prog_bar=True)

    def update(self, rollout: Rollout, old_logprobs: torch.Tensor, old_values: torch.Tensor,
               advantages: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        """``ppo_epochs`` shuffled passes of minibatch optimiser steps; the mean of each statistic over them."""
        optimizer = self.optimizers()
        sums: dict[str, float] = {}
        n = len(old_logprobs)
        steps = 0
        for _ in range(self.ppo.ppo_epochs):
            order = torch.randperm(n, generator=self.generator).to(old_logprobs.device)
            for start in range(0, n, self.ppo.minibatch_size):
                rows = order[start:start + self.ppo.minibatch_size]
                part = rollout.select(rows)
                mask = part.response_mask
                new = score(self.policy, part, self.sampling.temperature)
                pg_loss, clipfrac, approx_kl = policy_loss(new.logprobs, old_logprobs[rows], advantages[rows], mask,
                                                           self.ppo.clip_range)
                vf_loss, vf_clipfrac = value_loss(new.values, old_values[rows], returns[rows], mask,
                                                  self.ppo.clip_range_value)
                loss = pg_loss + self.ppo.vf_coef * vf_loss
                optimizer.zero_grad()  # type: ignore[union-attr]
                self.manual_backward(loss)
                self.clip_gradients(optimizer, gradient_clip_val=self.ppo.max_grad_norm,  # type: ignore[arg-type]
                                    gradient_clip_algorithm="norm")
                optimizer.step()  # type: ignore[union-attr]
                for key, value in (("policy_loss", pg_loss), ("value_loss", vf_loss), ("clipfrac", clipfrac),
                                   ("value_clipfrac", vf_clipfrac), ("approx_kl", approx_kl)):
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
                steps += 1
        return {key: value / steps for key, value in sums.items()}


class PromptBatches(Sampler[list[int]]):
    """``steps`` batches of ``batch_size`` prompt indices, drawn without replacement within a batch (seeded)."""

    def __init__(self, n: int, batch_size: int, steps: int, seed: int) -> None:
        if n < batch_size:
            raise ValueError(f"{n} prompts, fewer than a batch of {batch_size}")
        self.n, self.batch_size, self.steps, self.seed = n, batch_size, steps, seed

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Any:
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.steps):
            yield torch.randperm(self.n, generator=generator)[: self.batch_size].tolist()


def prompt_loader(prompt_ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, steps: int,
                  seed: int) -> DataLoader[Any]:
    """One left-padded batch of tokenised prompts per PPO step."""
    def collate(rows: list[Sequence[int]]) -> dict[str, torch.Tensor]:
        ids, mask = left_pad(rows, pad_id)
        return {"prompt_ids": ids, "prompt_mask": mask}

    return DataLoader(list(prompt_ids), batch_sampler=PromptBatches(len(prompt_ids), batch_size, steps, seed),
                      collate_fn=collate)
