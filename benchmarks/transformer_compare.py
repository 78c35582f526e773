"""The from-scratch Transformer (transformer/) against transformers' GPT-2 of the same size, and a Mixture of
Experts against the dense model: the three quick recipes, same data, tokens and schedule.

    python benchmarks/transformer_compare.py --train [--max-steps 400] [--out runs/compare]   # trains the three
    python benchmarks/transformer_compare.py [--out runs/compare]                             # the report
    python benchmarks/transformer_compare.py --train --seeds 43 44 --max-steps 200   # + GPT-2 and dense, more seeds

``--train`` runs lm-quick.yaml (gpt2-quick), transformer-quick.yaml and transformer-moe-quick.yaml one after the
other (fresh runs; artifacts in <out>/models, runs in <out>/runs, so that a shortened run never takes the place of
the Makefile's models/gpt2-quick) and records each command's wall time. ``--seeds`` also trains GPT-2 and the dense
model with other seeds (each into <out>/seed-<n>; the seed changes the initialisation, the document shuffle and so the
held-out split, both models of a seed sharing it) and reports the dense / GPT-2 perplexity ratio of every seed: the
gap is within seed-to-seed noise when the t interval of the mean log-ratio over the seeds contains 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, GPT2LMHeadModel, PreTrainedTokenizerFast

from app.runtimes import create_runtime
from app.tasks import TASKS
from app.tasks.generation.generator import GenerationParams, Generator
from app.tasks.generation.sampling import SamplingParams
from contract import load_schema, open_artifact
from training.export.transformer_decoder import load_transformer
from training.language_model.corpus import encode, pack, read_corpus, split_documents
from training.language_model.scratch_lm import next_token_loss
from training.plots import read_metrics
from transformer.model import TransformerConfig, TransformerLM

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = [("gpt2-quick", "lm", "training/configs/lm-quick.yaml"),
        ("transformer-quick", "transformer_lm", "training/configs/transformer-quick.yaml"),
        ("transformer-moe-quick", "transformer_lm", "training/configs/transformer-moe-quick.yaml")]
LABELS = {"gpt2-quick": "GPT-2 (transformers)", "transformer-quick": "from scratch, dense",
          "transformer-moe-quick": "from scratch, MoE 4x top-2"}
PROMPT = "It was a cold morning when the ship left the harbour, and the captain"
WALLS = "walls.json"
RECIPE_SEED = 42
"""The seed the recipes name: the runs directly in <out>."""
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
"""Two-sided 95% Student t quantiles by degrees of freedom (seeds - 1)."""


def train(out: Path, max_steps: int | None, runs: list[tuple[str, str, str]] = RUNS, seed: int | None = None) -> None:
    """The recipes one after the other, fresh (an earlier run of the same name is removed first)."""
    walls_path = out / WALLS
    out.mkdir(parents=True, exist_ok=True)
    walls = json.loads(walls_path.read_text()) if walls_path.is_file() else {}
    for name, verb, recipe in runs:
        shutil.rmtree(out / "runs" / name, ignore_errors=True)
        command = [sys.executable, "-m", "training", verb, "--config", recipe, "--output.models_dir",
                   str(out / "models"), "--output.runs_dir", str(out / "runs")]
        command += ["--trainer.max_steps", str(max_steps)] if max_steps else []
        command += ["--seed", str(seed)] if seed is not None else []
        started = time.perf_counter()
        subprocess.run(command, check=True)
        walls[name] = {"command": " ".join(["python", *command[1:]]), "wall_s": time.perf_counter() - started}
        walls_path.write_text(json.dumps(walls, indent=2) + "\n")


def seed_folder(out: Path, seed: int) -> Path:
    return out if seed == RECIPE_SEED else out / f"seed-{seed}"


def seed_spread(out: Path, seeds: list[int]) -> dict[str, Any]:
    """Held-out perplexity of GPT-2 and the dense model for each seed (each pair on its seed's split), the per-seed
    ratio, and the mean log-ratio's t interval over the seeds."""
    rows = []
    for seed in seeds:
        ppl = {name: json.loads((seed_folder(out, seed) / "models" / name / "manifest.json").read_text())
               ["metrics"]["perplexity"] for name in ("gpt2-quick", "transformer-quick")}
        rows.append({"seed": seed, "gpt2": ppl["gpt2-quick"], "dense": ppl["transformer-quick"],
                     "ratio": ppl["transformer-quick"] / ppl["gpt2-quick"]})
    logs = [math.log(row["ratio"]) for row in rows]
    mean = statistics.fmean(logs)
    half = T95[len(logs) - 1] * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else math.inf
    spread = {name: statistics.stdev([math.log(row[name]) for row in rows]) if len(rows) > 1 else math.nan
              for name in ("gpt2", "dense")}
    return {"seeds": rows, "ratio_geomean": math.exp(mean),
            "ratio_ci95": [math.exp(mean - half), math.exp(mean + half)], "log_ppl_sd_across_seeds": spread,
            "within_noise": mean - half <= 0.0 <= mean + half}


def val_blocks(manifest: dict[str, Any], tokenizer: Any) -> torch.Tensor:
    """The held-out blocks the run validated on (same documents, split, BPE, packing and batch limit)."""
    settings = manifest["training"]
    data, trainer = settings["data"], settings["trainer"]
    docs = read_corpus(Path(data["corpus_dir"]), data["pattern"], data["max_chars"], settings["seed"])
    _, val_texts = split_documents(docs, data["val_fraction"])
    blocks = pack(encode(tokenizer, val_texts), int(tokenizer.eos_token_id), data["block_size"])
    return blocks[: int(trainer["limit_val_batches"]) * data["eval_batch_size"]]


def block_losses(model: Any, blocks: torch.Tensor) -> np.ndarray:
    """Mean next-token loss of each block (eval mode, no grad)."""
    losses = []
    with torch.no_grad():
        for chunk in blocks.split(32):
            logits = model(chunk).logits if isinstance(model, TransformerLM) else model(input_ids=chunk).logits
            losses += [float(next_token_loss(logits[i:i + 1], chunk[i:i + 1])) for i in range(len(chunk))]
    return np.array(losses)


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean per-block loss difference a - b with its 95% interval (blocks paired), as perplexity ratios."""
    diff = a - b
    half = 1.96 * float(diff.std(ddof=1)) / math.sqrt(len(diff))
    mean = float(diff.mean())
    return {"loss_diff": mean, "loss_diff_ci95": [mean - half, mean + half],
            "ppl_ratio": math.exp(mean), "ppl_ratio_ci95": [math.exp(mean - half), math.exp(mean + half)]}


def fresh_model(folder: Path) -> tuple[torch.nn.Module, bool]:
    """A randomly initialised model of the artifact's configuration (and whether it is a scratch model)."""
    config = json.loads((folder / "hf" / "config.json").read_text())
    if config.get("architecture") == "transformer-lm":
        return TransformerLM(TransformerConfig.from_dict(config)), True
    return GPT2LMHeadModel(AutoConfig.from_pretrained(folder / "hf")), False


def training_speed(folders: dict[str, Path], batch: int, block: int, rounds: int,
                   aux_weight: float) -> dict[str, float]:
    """Training tokens/s of each model (forward, backward, AdamW step on one ``[batch, block]`` batch): the median
    step over ``rounds``, the models' steps interleaved so that background load hits them alike."""
    torch.manual_seed(0)
    models = {name: fresh_model(folder) for name, folder in folders.items()}
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, (model, _) in models.items()}
    ids = torch.randint(0, 4096, (batch, block))
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(rounds + 1):
        for name, (model, scratch) in models.items():
            model.train()
            started = time.perf_counter()
            optimizers[name].zero_grad()
            if scratch:
                out = model(ids)
                loss = next_token_loss(out.logits, ids)
                if out.routing:
                    loss = loss + aux_weight * torch.stack([r.aux_loss for r in out.routing]).mean()
            else:
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizers[name].step()
            if round_:  # the first round warms up
                times[name].append(time.perf_counter() - started)
    return {name: batch * block / statistics.median(values) for name, values in times.items()}


def inference_speed(folders: dict[str, Path], new_tokens: int, repeats: int,
                    threads: int) -> dict[str, dict[str, float]]:
    """Greedy decoding tokens/s (after the first token) of each artifact through the app's generators, on both
    runtimes; the median of ``repeats``, models interleaved."""
    schema = load_schema()
    generators: dict[tuple[str, str], Generator] = {}
    for name, folder in folders.items():
        artifact = open_artifact(folder, schema)
        for kind in ("torch", "onnx"):
            generator = TASKS[artifact.task].create(artifact, create_runtime(kind, "cpu", threads))
            assert isinstance(generator, Generator)
            generator.load()
            generator.warmup()
            generators[(name, kind)] = generator
    params = GenerationParams(max_new_tokens=new_tokens, sampling=SamplingParams(temperature=0))
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in generators}
    for _ in range(repeats):
        for key, generator in generators.items():
            first, count = 0.0, 0
            for _token in generator.tokens(generator.encode(PROMPT), params):
                count += 1
                first = time.perf_counter() if count == 1 else first
            rates[key].append((count - 1) / (time.perf_counter() - first))
    result: dict[str, dict[str, float]] = {}
    for (name, kind), values in rates.items():
        result.setdefault(name, {})[kind] = statistics.median(values)
    return result


def dropped_rate(run_dir: Path) -> dict[str, float] | None:
    """The MoE's logged fraction of assignments over capacity: mean over the run and over its last quarter."""
    points = read_metrics(run_dir).get("train_dropped")
    if not points:
        return None
    values = [value for _, value in points]
    return {"mean": statistics.fmean(values), "last_quarter": statistics.fmean(values[-max(1, len(values) // 4):])}


def plot(out: Path, path: Path) -> None:
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for name, _, _ in RUNS:
        metrics = read_metrics(out / "runs" / name)
        if metrics.get("train_loss"):
            steps, values = zip(*metrics["train_loss"], strict=True)
            ax_train.plot(steps, values, label=LABELS[name])
        if metrics.get("val_loss"):
            steps, values = zip(*metrics["val_loss"], strict=True)
            ax_val.plot(steps, values, marker="o", label=LABELS[name])
    ax_train.set(title="training loss (logged every 20 steps)", xlabel="step", ylabel="cross-entropy")
    ax_val.set(title="held-out loss", xlabel="step")
    for ax in (ax_train, ax_val):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def report(out: Path, threads: int, infer_threads: int, rounds: int, repeats: int) -> dict[str, Any]:
    load_before = os.getloadavg()
    torch.set_num_threads(threads)
    folders = {name: out / "models" / name for name, _, _ in RUNS}
    manifests = {name: json.loads((folder / "manifest.json").read_text()) for name, folder in folders.items()}
    walls = json.loads((out / WALLS).read_text()) if (out / WALLS).is_file() else {}
    tokenizers = {hashlib.sha256((folder / "hf" / "tokenizer.json").read_bytes()).hexdigest()
                  for folder in folders.values()}
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folders["gpt2-quick"] / "hf")
    blocks = val_blocks(manifests["gpt2-quick"], tokenizer)
    models: dict[str, Any] = {"gpt2-quick": AutoModelForCausalLM.from_pretrained(folders["gpt2-quick"] / "hf").eval()}
    models.update({name: load_transformer(folders[name] / "hf") for name in ("transformer-quick",
                                                                            "transformer-moe-quick")})
    losses = {name: block_losses(model, blocks) for name, model in models.items()}
    data = manifests["gpt2-quick"]["training"]["data"]
    moe_weight = manifests["transformer-moe-quick"]["training"]["model"]["aux_loss_weight"]
    train_speed = training_speed(folders, data["batch_size"], data["block_size"], rounds, moe_weight)
    torch.set_num_threads(infer_threads)
    infer_speed = inference_speed(folders, 64, repeats, infer_threads)
    rows = {}
    for name, manifest in manifests.items():
        metrics, settings = manifest["metrics"], manifest["training"]
        arch = manifest.get("architecture") or {}
        model = models[name]
        rows[name] = {
            "perplexity": metrics["perplexity"], "val_loss": metrics["val_loss"],
            "val_loss_recomputed": float(losses[name].mean()), "steps": metrics["global_step"],
            "tokens_seen": metrics["global_step"] * settings["data"]["batch_size"] * settings["data"]["block_size"],
            "parameters": arch.get("parameters", sum(p.numel() for p in model.parameters())),
            "active_parameters": arch.get("active_parameters", sum(p.numel() for p in model.parameters())),
            "run_wall_s": walls.get(name, {}).get("wall_s"), "command": walls.get(name, {}).get("command"),
            "train_tokens_per_s": train_speed[name], "inference_tokens_per_s": infer_speed[name],
            "expert_load": [metrics[key] for key in sorted(metrics) if key[len("val_expert_load_"):].isdigit()
                            and key.startswith("val_expert_load_")] or None,
            "expert_load_max": metrics.get("val_expert_load_max"),
            "dropped_rate": dropped_rate(out / "runs" / name)}
    result = {"held_out_blocks": len(blocks), "block_tokens": blocks.shape[1], "same_tokenizer": len(tokenizers) == 1,
              "train_threads": threads, "infer_threads": infer_threads,
              "load_average": {"before": load_before, "after": os.getloadavg()}, "models": rows,
              "dense_vs_gpt2": paired(losses["transformer-quick"], losses["gpt2-quick"]),
              "moe_vs_dense": paired(losses["transformer-moe-quick"], losses["transformer-quick"])}
    plot(out, RESULTS / "transformer_loss_curves.png")
    return result


def table(result: dict[str, Any]) -> str:
    lines = [f"(training steps on {result['train_threads']} threads, decoding on {result['infer_threads']}; 1-minute "
             f"load average {result['load_average']['before'][0]:.1f} at the start)\n",
             "| model | params (active) | steps x tokens | held-out ppl | train tok/s | infer tok/s torch / onnx | "
             "expert load | dropped | run wall |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in result["models"].items():
        load = " / ".join(f"{v:.2f}" for v in row["expert_load"]) if row["expert_load"] else "-"
        dropped = f"{row['dropped_rate']['mean']:.1%}" if row["dropped_rate"] else "-"
        wall = f"{row['run_wall_s'] / 60:.1f} min" if row["run_wall_s"] else "-"
        speed = row["inference_tokens_per_s"]
        lines.append(f"| {LABELS[name]} | {row['parameters'] / 1e6:.2f}M ({row['active_parameters'] / 1e6:.2f}M) | "
                     f"{row['steps']} x {row['tokens_seen'] // row['steps']} | {row['perplexity']:.1f} | "
                     f"{row['train_tokens_per_s']:.0f} | {speed['torch']:.0f} / {speed['onnx']:.0f} | {load} | "
                     f"{dropped} | {wall} |")
    for key, what in (("dense_vs_gpt2", "dense / GPT-2"), ("moe_vs_dense", "MoE / dense")):
        pair = result[key]
        low, high = pair["ppl_ratio_ci95"]
        lines.append(f"\nperplexity ratio {what}: {pair['ppl_ratio']:.3f} (95% interval over the "
                     f"{result['held_out_blocks']} held-out blocks: {low:.3f} .. {high:.3f})")
    if "seed_spread" in result:
        spread = result["seed_spread"]
        lines += ["\n| seed | GPT-2 ppl | dense ppl | dense / GPT-2 |", "|---|---|---|---|"]
        lines += [f"| {row['seed']} | {row['gpt2']:.1f} | {row['dense']:.1f} | {row['ratio']:.3f} |"
                  for row in spread["seeds"]]
        low, high = spread["ratio_ci95"]
        lines.append(f"\nover {len(spread['seeds'])} seeds: ratio {spread['ratio_geomean']:.3f} (95% t interval "
                     f"{low:.3f} .. {high:.3f}): {'within' if spread['within_noise'] else 'outside'} "
                     "seed-to-seed noise")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="train the three quick recipes first")
    parser.add_argument("--max-steps", type=int, default=None, help="override the recipes' 400 steps (all three)")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training steps")
    parser.add_argument("--infer-threads", type=int, default=1, help=(
        "threads of each runtime while decoding (1: on a busy 2-core machine torch's 2-thread barriers wait on "
        "descheduled threads and decode 10-20x slower)"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=(
        f"more seeds for GPT-2 and the dense model (seed {RECIPE_SEED}: the runs in --out), into <out>/seed-<n>"))
    parser.add_argument("--rounds", type=int, default=10, help="timed training steps per model")
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per model and runtime")
    args = parser.parse_args()
    seeds = [seed for seed in args.seeds or [] if seed != RECIPE_SEED]
    if args.train:
        if not (args.out / "models" / RUNS[-1][0] / "manifest.json").is_file() or not seeds:
            train(args.out, args.max_steps)
        for seed in seeds:
            train(seed_folder(args.out, seed), args.max_steps, RUNS[:2], seed)
    result = report(args.out, args.threads, args.infer_threads, args.rounds, args.repeats)
    if seeds:
        result["seed_spread"] = seed_spread(args.out, [RECIPE_SEED, *seeds])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transformer_compare.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
