"""Tokens/s and time to first token of every text-generation artifact on both backends (in-process, greedy).

    python benchmarks/generation_speed.py [--models-dir models] [--new-tokens 64] [--threads 2]

Writes benchmarks/results/generation_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from app.runtimes import create_runtime
from app.tasks import TASKS
from app.tasks.generation.generator import GenerationParams
from app.tasks.generation.sampling import SamplingParams
from contract import discover, load_schema, open_artifact

PROMPT = "It was a cold morning when the ship left the harbour, and the captain"
RESULTS = Path(__file__).resolve().parent / "results" / "generation_speed.json"


def measure(generator: Any, new_tokens: int, repeats: int) -> dict[str, float]:
    ids = generator.encode(PROMPT)
    params = GenerationParams(max_new_tokens=new_tokens, sampling=SamplingParams(temperature=0))
    ttfts, rates, counts = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        first, count = 0.0, 0
        for _token in generator.tokens(ids, params):
            count += 1
            if count == 1:
                first = time.perf_counter() - started
        total = time.perf_counter() - started
        ttfts.append(first)
        rates.append((count - 1) / (total - first) if count > 1 else 0.0)
        counts.append(count)
    return {"prompt_tokens": len(ids), "new_tokens": min(counts), "ttft_ms": 1000 * statistics.median(ttfts),
            "tokens_per_s": statistics.median(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    schema = load_schema()
    rows = []
    for folder in discover(args.models_dir):
        artifact = open_artifact(folder, schema)
        if artifact.task != "text-generation":
            continue
        for kind in ("torch", "onnx"):
            if kind == "onnx" and "onnx" not in artifact.manifest:
                continue
            generator = TASKS[artifact.task].create(artifact, create_runtime(kind, "cpu", args.threads))
            generator.load()
            generator.warmup()
            rows.append({"model": artifact.name, "backend": kind, "threads": args.threads,
                         **measure(generator, args.new_tokens, args.repeats)})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"prompt": PROMPT, "greedy": True, "results": rows}, indent=2) + "\n")
    print("| model | backend | prompt tokens | new tokens | TTFT (ms) | tokens/s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['backend']} | {r['prompt_tokens']} | {r['new_tokens']} | {r['ttft_ms']:.0f} | "
              f"{r['tokens_per_s']:.1f} |")


if __name__ == "__main__":
    main()
