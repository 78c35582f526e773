"""PPO's arithmetic, apart from any model (Schulman et al. 2017; as applied to language by Ziegler et al. 2019):
masked statistics, per-token rewards with a KL penalty, GAE advantages, the clipped policy and value losses, and the
adaptive KL controller.

Shapes: ``[batch, k]`` over the k response tokens; ``mask`` is 1 on real tokens and 0 on the padding after an eos.
"""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is 1."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean and unit variance over the masked positions (0 elsewhere)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + eps) * mask


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token (every row has at least one)."""
    return (mask.sum(dim=1).long() - 1).clamp(min=0)


def penalised_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                      mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards ``-kl_coef * (log pi - log pi_ref)``, plus the sequence's score on its last real token.

    Returns (rewards, per-token KL estimate), both 0 on padding.
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    rows = torch.arange(len(scores), device=scores.device)
    rewards[rows, last_index(mask)] += scores.to(rewards.dtype)
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over each row, backwards from its last token.

    delta_t = r_t + gamma V_{t+1} - V_t;  A_t = delta_t + gamma lam A_{t+1};  returns R_t = A_t + V_t. The value
    after the last real token is 0 (the episode ends there). Returns (advantages, returns), 0 on padding.
    """
    values, rewards = values * mask, rewards * mask
    steps = rewards.shape[1]
    running = torch.zeros_like(rewards[:, 0])
    advantages = torch.zeros_like(rewards)
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip_range: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clipped surrogate: mean over tokens of max(-A r, -A clip(r, 1 - eps, 1 + eps)), r = pi / pi_old.

    Returns (loss, clip fraction: the share of tokens where the clipped term was the larger, approximate KL
    between the old and the new policy: mean of (log r)^2 / 2).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_fraction.detach(), (0.5 * masked_mean(log_ratio.detach() ** 2, mask))


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: 0.5 mean max((V - R)^2, (V_old + clip(V - V_old, +-eps) - R)^2); (loss, clip fraction)."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    unclipped_loss, clipped_loss = (values - returns) ** 2, (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), mask)
    return loss, masked_mean((clipped_loss > unclipped_loss).float(), mask).detach()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last axis (nats)."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] for each position: logits ``[batch, k, vocab]``, tokens ``[batch, k]``."""
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


class KLController:
    """The KL coefficient beta. Adaptive (``target`` set; Ziegler et al. 2019, section 2.2): after each batch,

        e = clip(KL / target - 1, -0.2, 0.2);  beta <- beta (1 + e n / horizon)

    with KL the batch's mean KL per continuation and n the continuations in the batch: beta grows while the
    policy drifts further than ``target`` from the reference and shrinks while it stays closer. Fixed otherwise.
    """

    def __init__(self, init: float, target: float | None = None, horizon: int = 10000) -> None:
        if target is not None and (target <= 0 or horizon <= 0):
            raise ValueError(f"target KL and horizon must be positive, got {target}, {horizon}")
        self.initial, self.value, self.target, self.horizon = init, init, target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        if self.target is not None:
            error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
