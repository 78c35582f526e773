"""Our PPO (training/rlhf, Lightning) beside trl on the same base policy, prompts, reward and sample budget.

    python benchmarks/rlhf_trl.py --config training/configs/ppo-quick.yaml [--ours-run runs/gpt2-reviews-ppo]

trl 1.16 has no PPOTrainer any more (removed from trl and trl.experimental); its on-policy trainers with a reward
function are RLOOTrainer and GRPOTrainer. RLOO is the closer anchor: REINFORCE with a leave-one-out baseline over
``num_generations`` continuations of each prompt, the KL to the reference subtracted from the reward
(``beta`` * sequence KL, as our per-token penalty sums to), PPO-style clipped ratios over ``num_iterations`` passes.
It has no value head and no GAE (the leave-one-out mean is its baseline), and a fixed beta (ours adapts).

Budget matched per rollout batch: 64 continuations of ``min_new_tokens``..``max_new_tokens`` tokens (trl: 16 prompts
x 4 generations; ours: 64 prompts), then 16 optimiser steps of 16 continuations (trl: steps_per_generation 4 x
num_iterations 4; ours: 4 PPO epochs x 4 minibatches), same learning rate, Adam eps, grad clip, sampling
(temperature 1, no top-k/p; eos blocked for the first min_new_tokens: trl through generate's min_new_tokens, which
its logprobs ignore, ours in the logprobs too), reward (the int8 student's positive log-odds on prompt +
continuation), KL coefficient (trl's fixed beta = our initial one), whitened advantages. Both tuned models are then
evaluated by the same code (training.rlhf.evaluation) on the same held-out prompts with the same judge (the fp32
teacher).

Ours is the `training ppo` run of the recipe (``--ours-run``: its history.json and evaluation.json are read; without
it the verb runs here into a scratch folder). Wall time: the training loop alone (ours: Lightning's fit; trl:
trainer.train()), both on this machine with the recipe's thread count. Writes benchmarks/results/rlhf_compare.json
and rlhf_compare.png, and prints the table. trl is not a project dependency: `pip install trl~=1.16` (it brings
datasets; it leaves torch and transformers as they are).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentParser

from training.config import OutputConfig, PPOConfig, PromptConfig, RewardConfig, SamplingConfig, TrainerConfig
from training.plots import plot_reward_and_kl
from training.rlhf.evaluation import evaluate_tuning
from training.rlhf.policy import load_generator
from training.rlhf.prompts import read_prompts, read_sentences
from training.rlhf.reward import SentimentScorer
from training.verbs.ppo import PPOOutputConfig
from training.verbs.ppo import ppo as run_ppo

RESULTS = Path(__file__).resolve().parent / "results"
GENERATIONS = 4
"""trl: continuations per prompt (RLOO's leave-one-out group)."""


def recipe(path: Path) -> dict[str, Any]:
    """The recipe's sections as the verb's dataclasses (jsonargparse, as the CLI reads them)."""
    parser = ArgumentParser()
    for name, cls in (("ppo", PPOConfig), ("sampling", SamplingConfig), ("prompts", PromptConfig),
                      ("reward", RewardConfig), ("trainer", TrainerConfig), ("output", OutputConfig)):
        parser.add_class_arguments(cls, name)
    parser.add_argument("--seed", type=int, default=42)
    raw = yaml.safe_load(path.read_text())
    cfg = parser.instantiate_classes(parser.parse_object(raw))
    return {key: cfg[key] for key in ("ppo", "sampling", "prompts", "reward", "trainer", "output", "seed")}


def ours(cfg: dict[str, Any], run: Path | None) -> dict[str, Any]:
    """history, evaluation and wall time of our verb's run (read from ``run`` or run now into a scratch folder)."""
    if run is None:
        scratch = Path(tempfile.mkdtemp(prefix="rlhf-bench-"))
        output = PPOOutputConfig(name=cfg["output"].name, models_dir=str(scratch / "models"),
                                 runs_dir=str(scratch / "runs"))
        run_ppo(cfg["ppo"], cfg["sampling"], cfg["prompts"], cfg["reward"], cfg["trainer"], output, cfg["seed"])
        run = scratch / "runs" / output.name
    block = json.loads((run / "evaluation.json").read_text())
    return {"trainer": "training/rlhf PPO (Lightning, manual optimisation)",
            "history": json.loads((run / "history.json").read_text()), "after": block["evaluation"]["after"],
            "before": block["evaluation"]["before"], "wall_seconds": block["wall_seconds"],
            "samples": block["samples"], "kl_coef_final": block["kl_coef"]["final"]}


def trl_rloo(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    """RLOO on the same budget; its per-generation-batch log as history; the tuned model evaluated as ours."""
    from datasets import Dataset  # the benchmark's optional dependencies (trl brings datasets)
    from trl import RLOOConfig, RLOOTrainer

    ppo, sampling, reward_cfg, seed = cfg["ppo"], cfg["sampling"], cfg["reward"], cfg["seed"]
    _, tokenizer, base = load_generator(Path(ppo.base_model))
    train_prompts, _ = read_prompts(cfg["prompts"], seed)
    scorer = SentimentScorer(Path(reward_cfg.model), reward_cfg.variant, reward_cfg.threads)

    def reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        return [float(s) for s in scorer.scores(texts, reward_cfg.target, reward_cfg.kind)]

    per_step = ppo.minibatch_size
    updates_per_batch = (ppo.batch_size // per_step) * ppo.ppo_epochs
    args = RLOOConfig(
        output_dir=str(work), seed=seed, use_cpu=True, report_to="none", save_strategy="no",
        logging_steps=updates_per_batch, max_steps=ppo.steps * updates_per_batch, gradient_checkpointing=False,
        per_device_train_batch_size=per_step, steps_per_generation=ppo.batch_size // per_step,
        num_iterations=ppo.ppo_epochs, num_generations=GENERATIONS, max_completion_length=sampling.max_new_tokens,
        temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p, beta=ppo.init_kl_coef,
        epsilon=ppo.clip_range, learning_rate=ppo.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        adam_epsilon=1e-5, weight_decay=0.0, max_grad_norm=ppo.max_grad_norm, normalize_advantages=True,
        disable_dropout=True, dataloader_num_workers=0, bf16=False, fp16=False,
        generation_kwargs={"min_new_tokens": sampling.min_new_tokens} if sampling.min_new_tokens else None)
    trainer = RLOOTrainer(model=str(base.hf_dir), reward_funcs=reward, args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_dict({"prompt": train_prompts}))
    started = time.monotonic()
    trainer.train()
    wall = time.monotonic() - started
    history = []
    for entry in trainer.state.log_history:
        if "reward" in entry and "step" in entry:
            length = float(entry.get("completions/mean_length", sampling.max_new_tokens))
            history.append({"samples": math.ceil(entry["step"] / updates_per_batch) * ppo.batch_size,
                            "reward": float(entry["reward"]), "kl": float(entry.get("kl", 0.0)) * length,
                            "entropy": float(entry.get("entropy", float("nan"))), "response_length": length})
    return {"trainer": f"trl {version('trl')} RLOOTrainer", "history": history,
            "model": trainer.model.eval(), "wall_seconds": wall, "samples": ppo.steps * ppo.batch_size}


def evaluated(model: torch.nn.Module, cfg: dict[str, Any]) -> dict[str, Any]:
    reference, tokenizer, _ = load_generator(Path(cfg["ppo"].base_model))
    _, eval_prompts = read_prompts(cfg["prompts"], cfg["seed"])
    judge = SentimentScorer(Path(cfg["reward"].judge), cfg["reward"].judge_variant, cfg["reward"].threads)
    scorer = SentimentScorer(Path(cfg["reward"].model), cfg["reward"].variant, cfg["reward"].threads)
    sentences = read_sentences(cfg["prompts"].eval_file, cfg["prompts"].text_column, cfg["seed"])
    result = evaluate_tuning(model, reference, tokenizer, eval_prompts, judge, scorer, cfg["reward"].target,
                             cfg["sampling"], cfg["seed"] + 1, cfg["ppo"].eval_batch_size, sentences)
    result.pop("samples")
    return result


def row(name: str, run: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    last = run["history"][-10:]
    return {"method": name, "trainer": run["trainer"], "samples": run["samples"],
            "wall_seconds": round(run["wall_seconds"], 1),
            "train_reward_last10": sum(h["reward"] for h in last) / len(last),
            "train_kl_last10": sum(h["kl"] for h in last) / len(last),
            **{f"eval_{k}": v for k, v in after.items() if isinstance(v, int | float)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("training/configs/ppo-quick.yaml"))
    parser.add_argument("--ours-run", type=Path, default=None, help="a finished `training ppo` run folder")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cfg = recipe(args.config)
    if cfg["trainer"].threads:
        torch.set_num_threads(cfg["trainer"].threads)
    mine = ours(cfg, args.ours_run)
    with tempfile.TemporaryDirectory(prefix="trl-rloo-") as work:
        theirs = trl_rloo(cfg, Path(work))
        theirs_after = evaluated(theirs.pop("model"), cfg)
    base = {k: v for k, v in mine["before"].items() if isinstance(v, int | float)}
    rows = [{"method": "base (no tuning)", "trainer": "-", "samples": 0, "wall_seconds": 0.0,
             **{f"eval_{k}": v for k, v in base.items()}},
            row("ours: PPO", mine, mine["after"]), row("trl: RLOO", theirs, theirs_after)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rlhf_compare.json").write_text(json.dumps(
        {"config": str(args.config), "rows": rows, "curves": {"ours": mine["history"], "trl": theirs["history"]}},
        indent=1))
    plot_reward_and_kl({"ours: PPO (Lightning)": mine["history"], "trl: RLOOTrainer": theirs["history"]},
                       args.out / "rlhf_compare.png", "same base, prompts, reward and sample budget")
    columns = ["method", "samples", "wall_seconds", "train_reward_last10", "train_kl_last10", "eval_target_share",
               "eval_reward_model_share", "eval_kl", "eval_distinct_2", "eval_perplexity_ref", "eval_response_length"]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns)
              + " |")


if __name__ == "__main__":
    main()
