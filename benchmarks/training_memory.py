"""Peak memory of each `quick` training recipe, step-capped, export included.

    python benchmarks/training_memory.py --max-steps 30 --threads 1

Runs `python -m training <verb> --config training/configs/<recipe>-quick.yaml` for sentiment, distill and
lm, one after another, with `--trainer.max_steps` capped (one validation at the cap) into a temporary
models/runs dir (nothing in models/ or runs/ is touched; distill reads --teacher). Peak memory is reached
in the first steps (model, optimizer state, data) and at export, so a capped run shows the profile's peak
without its full wall time. Peak RSS comes from `/usr/bin/time -v` ("Maximum resident set size") when it
is installed; the process tree is also sampled with psutil (used when it is not).
Writes benchmarks/results/training_memory.{json,md,png}.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import GIB, grouped_bars, max_rss_bytes, write_results
from servers import REPO, RssSampler, machine_info

from training.config import DEFAULT_DATA_ROOT

RESULTS = REPO / "benchmarks" / "results"
TIME = Path("/usr/bin/time")
RECIPES = ("sentiment", "distill", "lm")  # each is also its `python -m training` verb
TARGET_GIB = 8.0


def command(recipe: str, args: argparse.Namespace, tmp: Path) -> list[str]:
    argv = [sys.executable, "-m", "training", recipe, "--config",
            f"training/configs/{recipe}-quick.yaml",
            "--trainer.max_steps", str(args.max_steps), "--trainer.val_check_interval", str(args.max_steps),
            "--trainer.threads", str(args.threads), "--output.models_dir", str(tmp / "models"),
            "--output.runs_dir", str(tmp / "runs"), "--output.resume", "false"]
    if recipe == "lm":
        argv += ["--data.corpus_dir", str(args.data / "corpus" / "moby-dick")]
        if args.max_chars:
            argv += ["--data.max_chars", str(args.max_chars)]
        return argv
    argv += ["--data.data_dir", str(args.data / "sst2")]
    if args.max_train_examples:
        argv += ["--data.max_train_examples", str(args.max_train_examples)]
    if recipe == "distill":
        argv += ["--distillation.teacher", str(args.teacher.resolve())]
    return argv


def measure(recipe: str, args: argparse.Namespace) -> dict[str, Any]:
    """One capped run: exit code, wall time, peak RSS from time -v and from sampling, and the log's tail."""
    with tempfile.TemporaryDirectory(prefix=f"bench-train-{recipe}-") as name:
        tmp = Path(name)
        argv = command(recipe, args, tmp)
        if TIME.is_file():
            argv = [str(TIME), "-v", "-o", str(tmp / "time.txt"), *argv]
        log = tmp / "train.log"
        began = time.perf_counter()
        with log.open("wb") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
            sampler = RssSampler(process.pid, interval_s=0.5)
            sampler.start()
            code = process.wait()
            sampler.stop()
        wall = time.perf_counter() - began
        from_time = max_rss_bytes((tmp / "time.txt").read_text()) if (tmp / "time.txt").is_file() else None
        tail = log.read_text(errors="replace")[-1500:] if code else ""
    peak = from_time if from_time is not None else sampler.peak
    return {"recipe": recipe, "max_steps": args.max_steps, "exit_code": code, "wall_s": wall,
            "peak_rss_bytes": peak, "peak_rss_gib": peak / GIB, "source": "time -v" if from_time else "psutil",
            "time_v_max_rss_bytes": from_time, "sampled_peak_rss_bytes": sampler.peak, "log_tail": tail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--max-steps", type=int, default=30, help="optimizer steps per run (the cap)")
    parser.add_argument("--threads", type=int, default=1, help="--trainer.threads")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT, help="data root (sst2/, corpus/)")
    parser.add_argument("--teacher", type=Path, default=REPO / "models" / "sentiment-minilm")
    parser.add_argument("--max-train-examples", type=int, default=None,
                        help="sentiment/distill: --data.max_train_examples (default: the recipe's, all)")
    parser.add_argument("--max-chars", type=int, default=None, help="lm: --data.max_chars (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for recipe in args.recipes:
        print(f"==> {recipe}-quick, capped at {args.max_steps} steps", flush=True)
        rows.append(measure(recipe, args))
    lines = [f"`quick` recipes STEP-CAPPED at {args.max_steps} optimizer steps (peak memory is reached in the "
             f"first steps and at export), {args.threads} thread(s), export included\n",
             f"| recipe | exit | wall s | peak RSS GiB | source | <= {TARGET_GIB:g} GiB |",
             "|---|---:|---:|---:|---|---|"]
    lines += [f"| {r['recipe']}-quick | {r['exit_code']} | {r['wall_s']:.0f} | {r['peak_rss_gib']:.2f} | "
              f"{r['source']} | {'met' if r['exit_code'] == 0 and r['peak_rss_gib'] <= TARGET_GIB else 'MISSED'} |"
              for r in rows]
    lines += [f"\n{r['recipe']} failed:\n```\n{r['log_tail']}\n```" for r in rows if r["exit_code"]]
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"step_capped": True, "max_steps": args.max_steps, "threads": args.threads,
              "machine": machine_info(), "rows": rows}
    write_results(args.out, "training_memory", result, table)
    grouped_bars([r | {"measure": "peak RSS"} for r in rows], [("peak_rss_gib", "peak RSS (GiB)", False)], "recipe",
                 "measure", f"quick recipes, step-capped at {args.max_steps} steps (target <= {TARGET_GIB:g} GiB)",
                 args.out / "training_memory.png")


if __name__ == "__main__":
    main()
