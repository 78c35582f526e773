"""`python -m training ppo`: tune a text-generation artifact with PPO against a sentiment artifact as reward model
(RLHF as in Ziegler et al. 2019 / trl's GPT-2 sentiment example), judge it with a different classifier before and
after, export the tuned policy as a text-generation artifact with an rlhf block in its manifest."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from contract import MANIFEST, publish, staging_dir, write_manifest
from training.config import OutputConfig, PPOConfig, PromptConfig, RewardConfig, SamplingConfig, TrainerConfig
from training.export.text_generation import export_lm
from training.plots import plot_reward_and_kl
from training.rlhf.evaluation import evaluate_tuning
from training.rlhf.policy import load_generator
from training.rlhf.prompts import read_prompts, read_sentences
from training.rlhf.reward import Reward, SentimentScorer
from training.rlhf.tuner import PPOTuner, prompt_loader

log = logging.getLogger(__name__)

SHOWN = 5
"""Sample generations (base vs tuned) kept in the manifest's evaluation block."""
WRITTEN = {"schema_version", "hf_dir", "created_at", "exporter", "files"}
"""Manifest fields `write_manifest` fills in itself."""


@dataclass
class PPOOutputConfig(OutputConfig):
    name: str = "gpt2-reviews-ppo"


def ppo(ppo: PPOConfig | None = None, sampling: SamplingConfig | None = None, prompts: PromptConfig | None = None,
        reward: RewardConfig | None = None, trainer: TrainerConfig | None = None,
        output: PPOOutputConfig | None = None, seed: int = 42) -> Path:
    """Tune a text-generation artifact with PPO towards a sentiment, export it to models/<name>.

    Reward: the target label's log-odds (or probability) from a text-classification artifact's ONNX graph (default:
    the int8 student) on prompt + continuation. Judged before and after, on held-out prompts, by another artifact
    (default: the fp32 teacher), with distinct-2 and perplexity under the frozen reference; the run is flagged
    diversity_collapsed when distinct-2 falls below min_diversity_ratio of the base's.

    Args:
        ppo: base artifact, steps, batch and minibatch sizes, PPO epochs, learning rate, GAE, clipping, KL control.
        sampling: temperature, top-k, top-p, k new tokens per prompt, stop at eos.
        prompts: training and held-out sentence files, prompt length in words, held-out prompt count.
        reward: reward artifact and graph, target label, log_odds or probability, judge artifact.
        trainer: Lightning settings (accelerator, precision, threads; single process).
        output: artifact name (default gpt2-reviews-ppo), models and runs folders.
        seed: global seed (prompts, rollouts, evaluation draws).
    """
    ppo, sampling, prompts = ppo or PPOConfig(), sampling or SamplingConfig(), prompts or PromptConfig()
    reward, trainer, output = reward or RewardConfig(), trainer or TrainerConfig(), output or PPOOutputConfig()
    L.seed_everything(seed, workers=True)
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    run_dir = Path(output.runs_dir) / output.name
    run_dir.mkdir(parents=True, exist_ok=True)
    lm, tokenizer, base = load_generator(Path(ppo.base_model))
    train_prompts, eval_prompts = read_prompts(prompts, seed)
    scorer = SentimentScorer(Path(reward.model), reward.variant, reward.threads)
    judge = SentimentScorer(Path(reward.judge), reward.judge_variant, reward.threads)
    if (judge.name, judge.graph) == (scorer.name, scorer.graph):
        log.warning("the judge is the reward model itself: the evaluation cannot see reward hacking")
    log.info("[1/4] %s; %d training prompts, %d held-out prompts; reward %s/%s (%s of %r); judge %s/%s", base.name,
             len(train_prompts), len(eval_prompts), scorer.name, scorer.graph, reward.kind, reward.target,
             judge.name, judge.graph)
    sentences = read_sentences(prompts.eval_file, prompts.text_column, seed)

    def judged(model: torch.nn.Module, reference: torch.nn.Module) -> dict[str, Any]:
        return evaluate_tuning(model, reference, tokenizer, eval_prompts, judge, scorer, reward.target, sampling,
                               seed + 1, ppo.eval_batch_size, sentences)

    before = judged(lm, lm)
    log.info("[2/4] before: %s", _summary(before))
    module = PPOTuner(lm, tokenizer, Reward(scorer, reward.target, reward.kind), ppo, sampling, seed)
    prompt_ids = tokenizer(train_prompts, add_special_tokens=False)["input_ids"]
    loader = prompt_loader(prompt_ids, int(tokenizer.eos_token_id), ppo.batch_size, ppo.steps, seed)
    fitter = L.Trainer(max_epochs=1, accelerator=trainer.accelerator, devices=1, precision=trainer.precision,
                       logger=CSVLogger(save_dir=run_dir, name="logs"), log_every_n_steps=1,
                       enable_checkpointing=False, num_sanity_val_steps=0, enable_model_summary=False,
                       default_root_dir=run_dir)
    started = time.monotonic()
    fitter.fit(module, train_dataloaders=loader)
    wall = time.monotonic() - started
    tuned = module.policy.lm.cpu().eval()
    after = judged(tuned, module.reference.cpu())
    log.info("[3/4] after %d steps (%d samples, %.0f s): %s", len(module.history), module.samples_seen, wall,
             _summary(after))
    collapsed = after["distinct_2"] < ppo.min_diversity_ratio * before["distinct_2"]
    if collapsed:
        log.warning("diversity collapsed: distinct-2 %.3f after vs %.3f before", after["distinct_2"],
                    before["distinct_2"])
    curve = plot_reward_and_kl({output.name: module.history}, run_dir / "reward_kl.png",
                               f"{output.name}: PPO on {base.name}, reward {scorer.name} ({reward.target})")
    samples = [{"prompt": b["prompt"], "base": b["continuation"], "tuned": a["continuation"]}
               for b, a in zip(before.pop("samples"), after.pop("samples"), strict=True)]
    block = {
        "algorithm": "ppo",
        "reward_model": {**scorer.describe(), "kind": reward.kind},
        "target": reward.target,
        "kl_coef": {"initial": module.kl.initial, "final": module.kl.value, "target_kl": ppo.target_kl,
                    "horizon": ppo.kl_horizon},
        "steps": len(module.history),
        "samples": module.samples_seen,
        "wall_seconds": round(wall, 1),
        "evaluation": {"judge": judge.describe(), "prompts_file": prompts.eval_file, "before": before,
                       "after": after, "diversity_collapsed": bool(collapsed),
                       "min_diversity_ratio": ppo.min_diversity_ratio, "samples": samples[:SHOWN]},
    }
    (run_dir / "history.json").write_text(json.dumps(module.history, indent=1))
    (run_dir / "evaluation.json").write_text(json.dumps({**block, "all_samples": samples}, indent=2))
    config = {"ppo": dataclasses.asdict(ppo), "sampling": dataclasses.asdict(sampling),
              "prompts": dataclasses.asdict(prompts), "reward": dataclasses.asdict(reward),
              "trainer": dataclasses.asdict(trainer), "output": dataclasses.asdict(output), "seed": seed}
    metrics = {"perplexity": after["perplexity_held_out"], "base_perplexity": before["perplexity_held_out"],
               "split_sizes": {"train_prompts": len(train_prompts), "eval_prompts": len(eval_prompts),
                               "held_out_sentences": len(sentences)}}
    log.info("[4/4] exporting to %s/%s", output.models_dir, output.name)
    exported = export_lm(tuned, tokenizer, run_dir / "export", output.name, base_model=base.name,
                         context_length=int(base.manifest["generation"]["context_length"]), metrics=metrics,
                         training=config, onnx=base.onnx != {}, curve=curve)
    return publish_with_rlhf(exported, Path(output.models_dir), block)


def publish_with_rlhf(exported: Path, models_dir: Path, block: dict[str, Any]) -> Path:
    """The artifact `export_lm` wrote (outside ``models_dir``) with the ``rlhf`` block added to its manifest
    (schema 1.5), published atomically into ``models_dir``; the exported copy is removed."""
    manifest = json.loads((exported / MANIFEST).read_text())
    fields = {key: value for key, value in manifest.items() if key not in WRITTEN}
    stage = staging_dir(models_dir, exported.name)
    try:
        shutil.copytree(exported, stage, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MANIFEST))
        write_manifest(stage, {**fields, "rlhf": block})
        final = publish(stage, models_dir / exported.name)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    shutil.rmtree(exported)
    return final


def _summary(result: dict[str, Any]) -> str:
    return ", ".join(f"{key} {result[key]:.3f}" for key in ("target_share", "reward_model_share", "judge_probability",
                                                           "kl", "distinct_2", "perplexity_ref", "response_length"))
