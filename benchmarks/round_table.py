"""This round vs the last round vs naive vs LitServe vs llama.cpp, in one run: one command, one table.

    python benchmarks/round_table.py --previous d86e076 --llama-python /work/llama-venv/bin/python

The last round is the server of an earlier commit (--previous: a `git worktree` of it, made for the run and
removed after) on the same model folders. One after another on this machine (run it alone: each step starts
its servers one at a time and loads every core):

1. `serving_load.py`, this checkout: naive FastAPI + `pipeline`, LitServe, this server's teacher on onnx fp32,
   torch fp32 and torch bf16 (bf16 only on a CPU with avx512_bf16/AMX or a GPU; `--torch-dtypes`);
2. `serving_load.py --app-root <previous>`: the last round's server, teacher on onnx and torch fp32;
3. `generation_load.py`, this checkout: sequential HF `generate`, then streaming `/v1/generate` on onnx and
   torch (each dtype) at 1 and 8 streams;
4. `generation_load.py --app-root <previous>`: the last round's onnx and torch fp32 (its own sequential
   baseline is measured again: the two baseline figures show how much the machine moved between steps);
5. with --llama-python: `llama_cpp.py`, llama-cpp-python's server on the SmolLM2 GGUF beside this server
   (onnx, torch fp32), all on streaming `/v1/completions`.

Each step writes its own results under `benchmarks/results/round_table/<step>/`; this script reads them and
writes `benchmarks/results/round_table.{json,md,png}`: classification req/s at the top concurrency with the
ratios to naive and LitServe, generation tokens/s and TTFT at 1 and 8 streams with the ratios to sequential
`generate` and to llama.cpp. `--steps` reruns only some steps and reads the others from an earlier run; the
table then says when each step's results were written.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from report import write_results
from servers import REPO, git_revision, machine_info

from training.config import DEFAULT_DATA_ROOT

RESULTS = REPO / "benchmarks" / "results"
BENCH = REPO / "benchmarks"


STEPS = ("serving-this", "serving-previous", "generation-this", "generation-previous", "llama-cpp")


def run_step(name: str, script: str, argv: Sequence[str], out: Path, run: bool) -> dict[str, Any]:
    """Run one benchmark script into ``out/name`` (``run`` False: read the results an earlier run left there) and
    return its JSON results, with the time they were written."""
    folder, results = out / name, out / name / script.replace(".py", ".json")
    if run:
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(BENCH / script), *argv, "--out", str(folder)]
        print(f"\n==> [{name}] {' '.join(command[1:])}", flush=True)
        subprocess.run(command, check=True, cwd=REPO)
    elif not results.is_file():
        raise SystemExit(f"step {name} not run (--steps) and no earlier results in {results}")
    written = datetime.fromtimestamp(results.stat().st_mtime, UTC).isoformat(timespec="seconds")
    return dict(json.loads(results.read_text())) | {"written": written}


def classification_rows(this: dict[str, Any], previous: dict[str, Any] | None, last: str) -> list[dict[str, Any]]:
    """One row per server at the top concurrency, ratios against this run's naive and LitServe rows."""
    top = this["reference_concurrency"]
    named = [("baseline", r) for r in this["rows"] if r["config"] in ("naive", "litserve")]
    named += [("this round", r) for r in this["rows"] if r["config"].startswith("app-")]
    named += [(last, r) for r in (previous or {}).get("rows", [])]
    base = {r["config"]: r["rps"] for rnd, r in named if r["concurrency"] == top and rnd == "baseline"}
    return [{"round": rnd, "server": r["config"], "runtime": r["backend"], "precision": r["precision"],
             "concurrency": top, "rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
             "errors": r["errors"], "vs_naive": r["rps"] / base["naive"] if base.get("naive") else None,
             "vs_litserve": r["rps"] / base["litserve"] if base.get("litserve") else None}
            for rnd, r in named if r["concurrency"] == top]


def _by_concurrency(rows: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["concurrency"]): r for r in rows}


def generation_rows(this: dict[str, Any], previous: dict[str, Any] | None, llama: dict[str, Any] | None,
                    last: str) -> list[dict[str, Any]]:
    """One row per server (1 and 8 streams side by side), ratios to llama.cpp at the same number of streams and
    to the sequential `generate` measured in the same step (the llama.cpp step's rows: this round's), so that the
    machine's drift between steps stays out of that ratio."""
    sequential = {rnd: next((r["tokens_per_s"] for r in result["rows"] if r["mode"] == "sequential HF generate"),
                            None) for rnd, result in (("this round", this), (last, previous or {"rows": []}))}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rnd, result in (("this round", this), (last, previous or {"rows": []})):
        for r in result["rows"]:
            key = (rnd, "sequential HF generate" if r["mode"].startswith("sequential") else
                   f"/v1/generate {r['backend']} {r.get('dtype', 'fp32')}", r["model"])
            groups.setdefault(key, []).append(r)
    for r in (llama or {"rows": []})["rows"]:
        if r["server"] != "llama.cpp default":
            rnd = "baseline" if r["server"] == "llama.cpp" else "this round"
            groups.setdefault((rnd, f"/v1/completions {r['server']}", llama_model(llama)), []).append(r)
    reference = _by_concurrency(groups.get(("baseline", "/v1/completions llama.cpp", llama_model(llama)), []))
    rows = []
    for (rnd, server, model), found in groups.items():
        at = _by_concurrency(found)
        row: dict[str, Any] = {"round": rnd, "server": server, "model": model}
        for c, r in at.items():
            row[f"tokens_per_s_{c}"] = r["tokens_per_s"]
            row[f"ttft_p50_ms_{c}"] = r["ttft_p50_ms"]
            base = sequential.get(rnd) or sequential["this round"]
            row[f"vs_sequential_{c}"] = r["tokens_per_s"] / base if base else None
            row[f"vs_llama_cpp_{c}"] = r["tokens_per_s"] / reference[c]["tokens_per_s"] if c in reference else None
        rows.append(row)
    return rows


def llama_model(llama: dict[str, Any] | None) -> str:
    return str(llama["setup"]["model"]) if llama else ""


def _cell(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def markdown(classes: list[dict[str, Any]], gens: list[dict[str, Any]], setup: str) -> str:
    lines = [setup, "", "| round | server | runtime | req/s | p50 ms | p99 ms | errors | vs naive | vs LitServe |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['round']} | {r['server']} | {r['runtime']} {r['precision']} | {r['rps']:.1f} | {r['p50_ms']:.0f} "
              f"| {r['p99_ms']:.0f} | {r['errors']} | {_cell(r['vs_naive'], '.2f')}x | "
              f"{_cell(r['vs_litserve'], '.2f')}x |" for r in classes]
    lines += ["", "| round | server | tok/s 1 stream | tok/s 8 streams | TTFT p50 ms 1 / 8 | vs sequential (8) | "
              "vs llama.cpp 1 / 8 |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in gens:
        llama = f"{_cell(r.get('vs_llama_cpp_1'), '.2f')} / {_cell(r.get('vs_llama_cpp_8'), '.2f')}"
        lines.append(f"| {r['round']} | {r['server']} | {_cell(r.get('tokens_per_s_1'), '.1f')} | "
                     f"{_cell(r.get('tokens_per_s_8'), '.1f')} | {_cell(r.get('ttft_p50_ms_1'), '.0f')} / "
                     f"{_cell(r.get('ttft_p50_ms_8'), '.0f')} | {_cell(r.get('vs_sequential_8'), '.2f')} | "
                     f"{llama} |")
    return "\n".join(lines)


def plot(classes: list[dict[str, Any]], gens: list[dict[str, Any]], out: Path) -> None:
    colours = {"baseline": "tab:gray", "this round": "tab:blue"}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    panels = ((axes[0], classes, "rps", "classification, req/s at the top concurrency",
               lambda r: f"{r['server']} ({r['round']})"),
              (axes[1], [g for g in gens if g.get("tokens_per_s_8")], "tokens_per_s_8", "generation, tokens/s at 8 "
               "streams", lambda r: f"{r['server']} ({r['round']})"))
    for ax, rows, key, title, label in panels:
        ax.barh([label(r) for r in rows], [r[key] for r in rows],
                color=[colours.get(r["round"], "tab:orange") for r in rows])
        for i, r in enumerate(rows):
            ax.text(r[key], i, f" {r[key]:.0f}", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle("this round (blue) vs the last round (orange) vs the baselines (grey)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--previous", required=True, help="the last round's commit (a `git worktree` of it is served)")
    parser.add_argument("--llama-python", default=None, help="python of a venv with llama-cpp-python[server]")
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--teacher", default="sentiment-minilm")
    parser.add_argument("--generator", default="smollm2-135m-instruct")
    parser.add_argument("--torch-dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--concurrency", type=int, default=32, help="classification connections (wrk)")
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--steps", nargs="*", choices=STEPS, default=list(STEPS),
                        help="run only these steps (none: only the table); the others are read from an earlier "
                             "run's results under <out>/round_table/ (the table says when each step's results were "
                             "written)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    steps, common = args.out / "round_table", ["--models-dir", str(args.models_dir.resolve()), "--data", str(args.data)]
    load = [*common, "--teacher", args.teacher, "--concurrency", str(args.concurrency), "--duration",
            str(args.duration), "--warmup", str(args.warmup), "--threads", str(args.threads), "--no-memory"]
    gen = [*common, "--models", args.generator, "--prompts", str(args.prompts), "--new-tokens", str(args.new_tokens),
           "--concurrency", "1", "8", "--threads", str(args.threads), "--backends", "onnx", "torch"]
    bf16_configs = [f"app-torch-{d}-teacher" for d in args.torch_dtypes if d != "fp32"]
    with tempfile.TemporaryDirectory(prefix="round-previous-") as tmp:
        previous = Path(tmp) / "checkout"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(previous), args.previous],
                       check=True)
        try:
            last = f"last round ({git_revision(previous)})"
            this_load = run_step("serving-this", "serving_load.py", [
                *load, "--torch-dtypes", *args.torch_dtypes, "--configs", "naive", "litserve", "app-onnx-teacher",
                "app-torch-teacher", *bf16_configs], steps, "serving-this" in args.steps)
            previous_load = run_step("serving-previous", "serving_load.py", [
                *load, "--app-root", str(previous), "--configs", "app-onnx-teacher", "app-torch-teacher"], steps,
                "serving-previous" in args.steps)
            this_gen = run_step("generation-this", "generation_load.py", [*gen, "--torch-dtypes", *args.torch_dtypes],
                                steps, "generation-this" in args.steps)
            previous_gen = run_step("generation-previous", "generation_load.py", [*gen, "--app-root", str(previous)],
                                    steps, "generation-previous" in args.steps)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(previous)], check=False)
    llama = None
    if args.llama_python:
        llama = run_step("llama-cpp", "llama_cpp.py", [*common, "--llama-python", args.llama_python, "--model",
                                                       args.generator, "--prompts", str(args.prompts), "--new-tokens",
                                                       str(args.new_tokens), "--threads", str(args.threads)], steps,
                         "llama-cpp" in args.steps)
    written = {name: result["written"] for name, result in zip(
        STEPS, (this_load, previous_load, this_gen, previous_gen, llama), strict=True) if result is not None}
    classes = classification_rows(this_load, previous_load, last)
    gens = generation_rows(this_gen, previous_gen, llama, last)
    sequential = [r for r in gens if r["server"] == "sequential HF generate"]
    setup = (f"{args.teacher}: single SST-2 sentences, wrk c={args.concurrency}, {args.warmup:g} s warm-up + "
             f"{args.duration:g} s; {args.generator}: {args.prompts} prompts, {args.new_tokens} new tokens, greedy; "
             f"{args.threads} thread(s) per server; this round {git_revision(REPO)}, {last}; sequential `generate` "
             "measured in both generation steps: " + ", ".join(f"{r['tokens_per_s_1']:.1f}" for r in sequential)
             + " tok/s; steps written " + ", ".join(f"{k} {v}" for k, v in written.items()))
    table = markdown(classes, gens, setup)
    result = {"setup": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": machine_info(), "this_revision": git_revision(REPO), "previous_revision": last,
              "steps_written": written, "classification": classes, "generation": gens}
    write_results(args.out, "round_table", result, table)
    plot(classes, gens, args.out / "round_table.png")


if __name__ == "__main__":
    main()
