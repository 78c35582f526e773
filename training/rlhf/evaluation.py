"""Evaluation against reward hacking: continuations of held-out prompts judged by a *different* classifier than the
reward, their diversity (distinct-2) and their perplexity under the frozen reference, and the KL to it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from training.config import SamplingConfig
from training.rlhf.ppo import token_logprobs
from training.rlhf.reward import SentimentScorer
from training.rlhf.rollout import generate, left_pad, reference_logprobs, response_logits


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): unique word n-grams / all word n-grams over every text (0 when there are none)."""
    grams = [tuple(words[i:i + n]) for text in texts for words in [text.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@torch.no_grad()
def held_out_perplexity(lm: nn.Module, tokenizer: Any, sentences: Sequence[str], batch_size: int = 64) -> float:
    """exp(mean next-token loss) over held-out sentences, each scored alone between two eos (as in training, where
    an eos follows every sentence): the quality of the LM as an LM, before and after tuning."""
    eos = int(tokenizer.eos_token_id)
    total, count = 0.0, 0
    for start in range(0, len(sentences), batch_size):
        rows = [[eos, *ids, eos] for ids in tokenizer(list(sentences[start:start + batch_size]),
                                                 add_special_tokens=False)["input_ids"] if ids]
        if not rows:
            continue
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [eos] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        logits = lm(input_ids=ids, attention_mask=mask).logits[:, :-1]
        logprobs = token_logprobs(logits.float(), ids[:, 1:])
        valid = mask[:, 1:].float()
        total -= float((logprobs * valid).sum())
        count += int(valid.sum())
    return math.exp(total / max(count, 1))


@torch.no_grad()
def evaluate(lm: nn.Module, reference: nn.Module, tokenizer: Any, prompts: Sequence[str], judge: SentimentScorer,
             target: str, sampling: SamplingConfig, seed: int, batch_size: int = 100,
             reward_model: SentimentScorer | None = None) -> dict[str, Any]:
    """Sample one continuation per prompt (seeded: the same draws for every model evaluated) and measure:

    - ``target_share``: share of prompt + continuation texts the judge labels ``target`` (``target_share_
      continuation_only``: the continuation alone), ``judge_probability``: mean judge probability of ``target``;
    - ``kl``: mean over continuations of sum_t log pi(y_t) - log pi_ref(y_t) (nats; 0 for the reference itself);
    - ``distinct_2`` of the continuations; ``perplexity_ref``: exp(mean -log pi_ref) of the continuation tokens;
    - ``response_length``: mean tokens per continuation (its eos included);
    - with ``reward_model``: ``reward_model_share``, the share it labels ``target`` (far above the judge's: the
      policy learned the reward model's quirks rather than the sentiment).
    Returns those and ``samples`` (prompt, continuation) in prompt order.
    """
    lm.eval()
    generator = torch.Generator().manual_seed(seed)
    eos = int(tokenizer.eos_token_id)
    full, continuations = [], []
    kl_sum, ref_nll, tokens = 0.0, 0.0, 0.0
    temperature = sampling.temperature or 1.0
    for start in range(0, len(prompts), batch_size):
        batch = list(prompts[start:start + batch_size])
        ids, mask = left_pad(tokenizer(batch, add_special_tokens=False)["input_ids"], eos)
        rollout = generate(lm, ids, mask, sampling, eos, generator)
        logprobs = token_logprobs(response_logits(lm, rollout).float() / temperature, rollout.response_ids)
        ref = reference_logprobs(reference, rollout, temperature)
        valid = rollout.response_mask
        kl_sum += float(((logprobs - ref) * valid).sum())
        ref_nll -= float((ref * valid).sum())
        tokens += float(valid.sum())
        full += rollout.texts(tokenizer)
        continuations += rollout.texts(tokenizer, with_prompt=False)
    probs = judge.scores(full, target, "probability")
    extra = {} if reward_model is None else {"reward_model_share": float(reward_model.predicts(full, target).mean())}
    return {
        "prompts": len(prompts),
        "target_share": float(judge.predicts(full, target).mean()),
        "target_share_continuation_only": float(judge.predicts(continuations, target).mean()),
        "judge_probability": float(probs.mean()),
        "kl": kl_sum / max(len(prompts), 1),
        "distinct_2": distinct_n(continuations, 2),
        "perplexity_ref": math.exp(ref_nll / max(tokens, 1.0)),
        "response_length": tokens / max(len(prompts), 1),
        **extra,
        "samples": [{"prompt": p, "continuation": c} for p, c in zip(prompts, continuations, strict=True)],
    }


def evaluate_tuning(lm: nn.Module, reference: nn.Module, tokenizer: Any, prompts: Sequence[str],
                    judge: SentimentScorer, reward_model: SentimentScorer, target: str, sampling: SamplingConfig,
                    seed: int, batch_size: int, sentences: Sequence[str]) -> dict[str, Any]:
    """`evaluate` (seeded draws from ``seed``) plus ``perplexity_held_out`` on ``sentences``: what a tuned policy and
    its base are measured by, in `training ppo` and in the trl comparison alike."""
    result = evaluate(lm, reference, tokenizer, prompts, judge, target, sampling, seed, batch_size,
                      reward_model=reward_model)
    result["perplexity_held_out"] = held_out_perplexity(lm, tokenizer, sentences)
    return result
