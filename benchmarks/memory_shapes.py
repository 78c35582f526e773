"""Memory of a classifier under varied batch shapes, per malloc: glibc's (the baseline) vs jemalloc vs tcmalloc.

    python benchmarks/memory_shapes.py --model models/sentiment-minilm --sweeps 8 --shapes 300

One child process per runtime and malloc, the malloc preloaded (``LD_PRELOAD``; ``system``: none, glibc's). Each loads
the model through the server's own code (`make_forward`, the traced torch forward included) and calls it from two
threads, as the server's two inference rounds do, over sweeps of random batch shapes (1-32 rows by 5-128 tokens,
the same seeded shapes in every child): its RSS after each sweep and the seconds each sweep took. A server sees
such shapes: its batcher pads each call to its longest text. Writes benchmarks/results/memory_shapes.{json,md,png}
and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from report import write_results
from servers import MALLOC_LIBRARIES, REPO, machine_info, malloc_library, tree_rss

RESULTS = REPO / "benchmarks" / "results"


def library(malloc: str) -> str | None:
    """The shared library to preload for ``malloc`` (None: the system's; '' when it is not installed)."""
    return None if malloc == "system" else malloc_library(malloc) or ""


def rss_mib() -> float:
    return tree_rss(psutil.Process()) / 2**20


def child(args: argparse.Namespace) -> None:
    """Load the model on ``args.runtime`` and sweep shapes; print one JSON line."""
    import numpy as np

    from app.runtimes import runtime_class
    from app.runtimes.base import allocator
    from app.tasks.classification.forward import make_forward
    from contract.reading import open_artifact

    forward = make_forward(open_artifact(args.model), runtime_class(args.runtime)("cpu", 1, args.dtype))
    loaded = rss_mib()
    rng = np.random.default_rng(args.seed)
    plan = [[(int(rng.integers(1, 33)), int(rng.integers(5, 129))) for _ in range(args.shapes)]
            for _ in range(args.sweeps)]

    def call(shape: tuple[int, int]) -> None:
        rows, length = shape
        ids = np.random.default_rng(rows * 1000 + length).integers(1000, 20000, (rows, length), dtype=np.int64)
        forward.logits(ids, np.ones((rows, length), np.int64))

    sweeps = []
    with ThreadPoolExecutor(2) as pool:
        for shapes in plan:
            started = time.perf_counter()
            list(pool.map(call, shapes))
            sweeps.append({"rss_mib": rss_mib(), "seconds": time.perf_counter() - started})
    print(json.dumps({"allocator": allocator(), "loaded_mib": loaded, "sweeps": sweeps}))


def measure(args: argparse.Namespace, runtime: str, dtype: str, malloc: str) -> dict[str, Any] | None:
    preload = library(malloc)
    if preload == "":
        print(f"  {malloc}: not installed (Debian: libjemalloc2, libtcmalloc-minimal4), skipped", flush=True)
        return None
    env = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}
    if preload:
        env["LD_PRELOAD"] = preload
    argv = [sys.executable, __file__, "--child", "--model", str(args.model), "--runtime", runtime, "--dtype", dtype,
            "--sweeps", str(args.sweeps), "--shapes", str(args.shapes), "--seed", str(args.seed)]
    print(f"==> {runtime} {dtype} on {malloc} malloc: {args.sweeps} sweeps of {args.shapes} shapes", flush=True)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{runtime} {dtype} on {malloc} malloc failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["allocator"] != malloc:
        raise RuntimeError(f"the child ran on {result['allocator']} malloc, not {malloc}")
    rss = [s["rss_mib"] for s in result["sweeps"]]
    half = len(rss) // 2
    return {"runtime": runtime, "dtype": dtype, "malloc": malloc, "library": preload, **result,
            "final_mib": rss[-1], "growth_second_half_mib": rss[-1] - rss[half - 1] if half else None,
            "seconds_per_sweep": statistics.median(s["seconds"] for s in result["sweeps"])}


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"{args.model.name}: {args.sweeps} sweeps of {args.shapes} random batch shapes (1-32 rows x 5-128 "
             "tokens), two caller threads, one intra-op thread each", "",
             "| runtime | malloc | RSS loaded | after sweep 1 | after the last | growth, second half | s per sweep |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        growth = "n/a" if r["growth_second_half_mib"] is None else f"{r['growth_second_half_mib']:+.0f} MiB"
        lines.append(f"| {r['runtime']} {r['dtype']} | {r['malloc']} | {r['loaded_mib']:.0f} MiB | "
                     f"{r['sweeps'][0]['rss_mib']:.0f} MiB | {r['final_mib']:.0f} MiB | "
                     f"{growth} | {r['seconds_per_sweep']:.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        rss = [r["loaded_mib"], *(s["rss_mib"] for s in r["sweeps"])]
        ax.plot(range(len(rss)), rss, marker="o", label=f"{r['runtime']} {r['dtype']}, {r['malloc']}")
    ax.set(xlabel="sweeps of random batch shapes", ylabel="RSS (MiB)",
           title="Memory under varied batch shapes, per malloc")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "sentiment-minilm")
    parser.add_argument("--runtimes", nargs="+", default=["torch:bf16", "torch:fp32", "onnx:fp32"],
                        help="runtime:dtype pairs (torch:bf16 needs a CPU with avx512_bf16 or AMX)")
    parser.add_argument("--mallocs", nargs="+", default=["system", "jemalloc", "tcmalloc"],
                        choices=["system", *MALLOC_LIBRARIES])
    parser.add_argument("--sweeps", type=int, default=8)
    parser.add_argument("--shapes", type=int, default=300, help="random batch shapes per sweep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runtime", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    args.model = args.model.resolve()
    if args.child:
        child(args)
        return
    rows = []
    for pair in args.runtimes:
        runtime, dtype = pair.split(":")
        rows += [row for malloc in args.mallocs if (row := measure(args, runtime, dtype, malloc))]
    write_results(args.out, "memory_shapes", {"machine": machine_info(), "model": str(args.model),
                                              "sweeps": args.sweeps, "shapes": args.shapes, "rows": rows},
                  table(rows, args))
    plot(rows, args.out / "memory_shapes.png")


if __name__ == "__main__":
    main()
