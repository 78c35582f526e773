"""PPO in training/rlhf on hand-computed numbers and a toy task: GAE, the clipped losses, the KL controller, the
server's sampling semantics, left-padded rollouts, and one Lightning PPO step (reference frozen, reward up)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from app.tasks.generation.sampling import SamplingParams, probabilities
from training.config import PPOConfig, SamplingConfig
from training.rlhf.evaluation import distinct_n
from training.rlhf.ppo import KLController, gae, penalised_rewards, policy_loss, value_loss, whiten
from training.rlhf.prompts import prefixes
from training.rlhf.rollout import generate, left_pad, next_token_probs, response_logits
from training.rlhf.tuner import PPOTuner, prompt_loader

WORDS = ["<eos>", "the", "a", "movie", "was", "it", "good", "bad", "plot", "and"]
PROMPTS = ["the movie", "it was", "the plot was", "a movie and", "it", "the movie was a"]


def toy_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer of 10 words (<eos> = 0): every word is one token, decode joins with spaces."""
    model = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<eos>"))
    model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=model, eos_token="<eos>", pad_token="<eos>")


def toy_lm(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(WORDS), n_positions=32, n_layer=2, n_head=2, n_embd=32, bos_token_id=0,
                        eos_token_id=0, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config).eval()


def test_gae_matches_a_hand_computed_example() -> None:
    # row 0: 3 real tokens; row 1: 2 real tokens then padding (its value after the last token counts as 0)
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, 2.0, 9.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0: d2 = 1 - .5 = .5; d1 = 0 + .5 - .5 = 0 -> A1 = .25; d0 = 0 -> A0 = .125
    # row 1: d1 = 2 + 0 - 1 = 1 -> A1 = 1; d0 = .5 + 1 - 1 = .5 -> A0 = .5 + .5 * 1 = 1
    torch.testing.assert_close(advantages, torch.tensor([[0.125, 0.25, 0.5], [1.0, 1.0, 0.0]]))
    torch.testing.assert_close(returns, torch.tensor([[0.625, 0.75, 1.0], [2.0, 2.0, 0.0]]))
    discounted, _ = gae(rewards[:1], torch.zeros(1, 3), mask[:1], gamma=0.9, lam=1.0)
    torch.testing.assert_close(discounted, torch.tensor([[0.81, 0.9, 1.0]]))  # lam = 1: discounted returns


def test_rewards_put_the_score_on_the_last_real_token_and_the_kl_everywhere() -> None:
    logprobs, ref = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, -0.5, -3.0]]), torch.full((2, 3), -1.5)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, kl = penalised_rewards(torch.tensor([3.0, -1.0]), logprobs, ref, mask, kl_coef=0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.5, 0.5, 0.5], [-0.5, 1.0, 0.0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, -0.05, 2.95], [0.05, -1.1, 0.0]]))


def test_clipped_policy_loss_at_known_ratios() -> None:
    ratios = torch.tensor([[0.5, 1.0, 1.5, 1.5, 0.5]])
    advantages = torch.tensor([[1.0, 1.0, 1.0, -1.0, -1.0]])
    loss, clipfrac, _ = policy_loss(torch.log(ratios), torch.zeros(1, 5), advantages, torch.ones(1, 5), 0.2)
    # per token max(-A r, -A clip(r, .8, 1.2)): -.5 (r .5 < .8 but A > 0: the unclipped, lower objective counts),
    # -1, -1.2 (clipped), 1.5 (A < 0: the unclipped is worse), .8 (clipped)
    assert float(loss) == pytest.approx((-0.5 - 1.0 - 1.2 + 1.5 + 0.8) / 5)
    assert float(clipfrac) == pytest.approx(2 / 5)
    masked, _, _ = policy_loss(torch.log(ratios), torch.zeros(1, 5), advantages,
                               torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]]), 0.2)
    assert float(masked) == pytest.approx(-0.75)


def test_clipped_value_loss() -> None:
    values, old, returns = torch.tensor([[2.0, 0.1]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    loss, clipfrac = value_loss(values, old, returns, torch.ones(1, 2), 0.2)
    # token 0: max((2 - 0)^2, (1.2 - 0)^2) = 4; token 1: max(.01, .01) = .01
    assert float(loss) == pytest.approx(0.5 * (4 + 0.01) / 2)
    assert float(clipfrac) == 0.0


def test_whiten_ignores_padding() -> None:
    out = whiten(torch.tensor([[1.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-4, rtol=0)


def test_kl_controller_update() -> None:
    controller = KLController(0.2, target=6.0, horizon=10000)
    assert controller.update(12.0, 64) == pytest.approx(0.2 * (1 + 0.2 * 64 / 10000))  # error clipped at +0.2
    value = controller.value
    assert controller.update(5.4, 100) == pytest.approx(value * (1 - 0.1 * 100 / 10000))  # 5.4/6 - 1 = -0.1
    value = controller.value
    assert controller.update(0.0, 1000) == pytest.approx(value * (1 - 0.2 * 1000 / 10000))  # clipped at -0.2
    assert controller.update(6.0, 1000) == pytest.approx(value * 0.98)  # on target: unchanged
    fixed = KLController(0.3, target=None)
    assert fixed.update(100.0, 64) == 0.3 and fixed.initial == 0.3


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8),
                                                             (0.9, 12, 0.6), (1.0, 3, 0.95)])
def test_sampling_distribution_is_the_servers(temperature: float, top_k: int, top_p: float) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 40)) * 3
    logits[0, :3] = logits[0, 3]  # ties at the top-k boundary
    ours = next_token_probs(torch.from_numpy(logits), temperature, top_k, top_p).numpy()
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    server = np.stack([probabilities(row, params) for row in logits])
    np.testing.assert_allclose(ours, server, atol=1e-12)


def test_left_padded_batched_rollouts_equal_single_prompt_ones() -> None:
    lm, tokenizer = toy_lm(), toy_tokenizer()
    prompts = tokenizer(PROMPTS, add_special_tokens=False)["input_ids"]
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=5, stop_at_eos=False)
    batch = generate(lm, *left_pad(prompts, 0), greedy, eos_id=0)
    for row, prompt in enumerate(prompts):
        alone = generate(lm, *left_pad([prompt], 0), greedy, eos_id=0)
        assert batch.response_ids[row].tolist() == alone.response_ids[0].tolist()
    sampled = generate(lm, *left_pad(prompts, 0), SamplingConfig(max_new_tokens=8), 0,
                       torch.Generator().manual_seed(1))
    ends = []
    for ids, mask in zip(sampled.response_ids.tolist(), sampled.response_mask.tolist(), strict=True):
        ends.append(ids.index(0) + 1 if 0 in ids else len(ids))
        assert mask == [1.0] * ends[-1] + [0.0] * (len(ids) - ends[-1])  # real up to the first eos, padding after
        assert set(ids[ends[-1]:]) <= {0}
    assert min(ends) < 8  # some rows did stop early
    held = generate(lm, *left_pad(prompts, 0), SamplingConfig(max_new_tokens=6, min_new_tokens=3), 0,
                    torch.Generator().manual_seed(1))
    assert held.response_ids[:, :3].ne(0).all() and held.response_mask[:, :3].eq(1).all()
    eos_probs = torch.softmax(response_logits(lm, held), dim=-1)[..., 0]
    assert eos_probs[:, :3].max() < 1e-30 < eos_probs[:, 3:].min()  # blocked while drawn, in the logprobs too


def test_prompts_are_the_first_words_of_long_enough_sentences() -> None:
    sentences = ["one two three four five six seven eight", "too short", "a b c d e f g h i j"]
    out = prefixes(sentences, 2, 4, 8, seed=0)
    assert len(out) == 2 and all(2 <= len(p.split()) <= 4 for p in out)
    assert sentences[0].startswith(out[0]) and sentences[2].startswith(out[1])
    assert distinct_n(["a b a b", "a b c"], 2) == pytest.approx(3 / 5)


def good_share(lm: GPT2LMHeadModel, tokenizer: Any) -> float:
    """Probability of "good" as the first new token, averaged over the prompts (the toy reward's expectation)."""
    ids, mask = left_pad(tokenizer(PROMPTS, add_special_tokens=False)["input_ids"], 0)
    with torch.no_grad():
        logits = lm(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    return float(torch.softmax(logits[:, -1], dim=-1)[:, WORDS.index("good")].mean())


def test_one_ppo_step_raises_a_toy_reward_and_leaves_the_reference_alone() -> None:
    lm, tokenizer = toy_lm(), toy_tokenizer()
    start = good_share(lm, tokenizer)

    def reward(texts: list[str]) -> torch.Tensor:  # share of "good" among the words (prompts have none)
        return torch.tensor([text.split().count("good") / 4 for text in texts])

    cfg = PPOConfig(batch_size=32, minibatch_size=8, ppo_epochs=4, learning_rate=1e-2, init_kl_coef=0.05)
    module = PPOTuner(lm, tokenizer, reward, cfg, SamplingConfig(max_new_tokens=4, stop_at_eos=False), seed=0)
    reference = {k: v.clone() for k, v in module.reference.state_dict().items()}
    policy = {k: v.clone() for k, v in module.policy.lm.state_dict().items()}
    prompt_ids = tokenizer(PROMPTS * 6, add_special_tokens=False)["input_ids"]
    L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(
        module, train_dataloaders=prompt_loader(prompt_ids, 0, 32, steps=1, seed=0))
    assert len(module.history) == 1 and module.samples_seen == 32
    stats = module.history[0]
    assert {"reward", "kl", "entropy", "clipfrac", "value_loss", "response_length"} <= set(stats)
    assert stats["response_length"] == 4 and 0 < stats["entropy"] <= math.log(len(WORDS)) + 1e-6
    for key, value in module.reference.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert not any(p.requires_grad for p in module.reference.parameters())
    assert any(not torch.equal(v, policy[k]) for k, v in module.policy.lm.state_dict().items())
    assert module.kl.value != module.kl.initial  # the adaptive controller moved
    after = good_share(module.policy.lm.eval(), tokenizer)
    assert after > start + 0.05, (start, after)
