"""Generation under load: aggregate tokens/s and time to first token of concurrent streams vs sequential HF.

    python benchmarks/generation_load.py --models-dir models --concurrency 1 8 --new-tokens 64

For each text-generation artifact (or --models): first the baseline, HF `model.generate` (torch, greedy)
on the prompts one after another in this process; then `python -m app` serving only that model (symlinked
models dir, --backends each) answers the same prompts as streaming `POST /v1/generate` requests, split over
`c` concurrent clients (httpx.AsyncClient) for each concurrency. Greedy (temperature 0) everywhere; eos
may end a text early, so tokens are counted from `usage` (server) and output lengths (baseline).
Aggregate tokens/s = all generated tokens / wall time. Writes benchmarks/results/generation_load.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from report import grouped_bars, write_results
from servers import REPO, app_argv, app_env, free_port, git_revision, linked_models, machine_info, py_spy, serve
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer

from training.classification.data import read_examples
from training.config import DEFAULT_DATA_ROOT

RESULTS = REPO / "benchmarks" / "results"


class FirstToken(BaseStreamer):
    """Records when `generate` emits its first new token (its first `put` is the prompt)."""

    def __init__(self) -> None:
        self.puts, self.first = 0, 0.0

    def put(self, value: Any) -> None:
        self.puts += 1
        if self.puts == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        return None


def generators(models_dir: Path, only: list[str] | None) -> list[str]:
    names = []
    for manifest in sorted(models_dir.glob("*/manifest.json")):
        if json.loads(manifest.read_text()).get("task") == "text-generation":
            names.append(manifest.parent.name)
    return [n for n in names if not only or n in only]


def ttft_ms(seconds: list[float]) -> dict[str, float]:
    """Median, 99th percentile (linear interpolation) and maximum of the times to first token, in ms."""
    p99 = statistics.quantiles(seconds, n=100, method="inclusive")[98] if len(seconds) > 1 else seconds[0]
    return {"ttft_p50_ms": 1000 * statistics.median(seconds), "ttft_p99_ms": 1000 * p99,
            "ttft_max_ms": 1000 * max(seconds)}


def sequential_hf(path: Path, prompts: list[str], new_tokens: int, threads: int) -> dict[str, Any]:
    """HF `generate` on each prompt in turn: total tokens / total time, and the median time to first token."""
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ttfts, tokens = [], 0
    with torch.inference_mode():
        model.generate(**tokenizer(prompts[0], return_tensors="pt"), max_new_tokens=4, do_sample=False,
                       pad_token_id=pad)
        began = time.perf_counter()
        for prompt in prompts:
            inputs, streamer = tokenizer(prompt, return_tensors="pt"), FirstToken()
            started = time.perf_counter()
            out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad,
                                 streamer=streamer)
            ttfts.append(streamer.first - started)
            tokens += out.shape[1] - inputs["input_ids"].shape[1]
        wall = time.perf_counter() - began
    del model
    gc.collect()
    return {"requests": len(prompts), "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            **ttft_ms(ttfts), "errors": 0}


async def one_stream(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[float, int, bool]:
    """(seconds to the first event, completion tokens, ok) of one streaming /v1/generate request."""
    started, first, tokens = time.perf_counter(), 0.0, 0
    async with client.stream("POST", "/v1/generate", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return 0.0, 0, False
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            first = first or time.perf_counter() - started
            if "error" in event:
                return first, tokens, False
            if "usage" in event:
                tokens = event["usage"]["completion_tokens"]
    return first, tokens, True


async def concurrent_streams(url: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """``bodies`` split over ``concurrency`` clients, each sending its share one after another."""
    results: list[tuple[float, int, bool]] = []

    async def worker(share: list[dict[str, Any]], client: httpx.AsyncClient) -> None:
        for body in share:
            results.append(await one_stream(client, body))

    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(600.0)) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(bodies[i::concurrency], client) for i in range(concurrency)))
        wall = time.perf_counter() - began
    ok = [r for r in results if r[2]]
    tokens = sum(r[1] for r in ok)
    ttfts = [r[0] for r in ok] or [0.0]
    return {"requests": len(results), "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            **ttft_ms(ttfts), "errors": len(results) - len(ok)}


def serve_rows(args: argparse.Namespace, name: str, backend: str, prompts: list[str],
               dtype: str = "fp32") -> list[dict[str, Any]]:
    """The server's rows for one backend (torch: in ``dtype``, APP_TORCH_DTYPE) at each concurrency."""
    port, label = free_port(), backend if dtype == "fp32" else f"{backend}-{dtype}"
    bodies = [{"prompt": p, "max_new_tokens": args.new_tokens, "temperature": 0, "stream": True, "model": name}
              for p in prompts]
    with linked_models(args.models_dir, [name]) as models:
        extra = {"APP_REQUEST_TIMEOUT_S": "3600", **({"APP_TORCH_DTYPE": dtype} if backend == "torch" else {}),
                 **args.server_env}
        env = app_env(models, port, backend, args.threads, extra)
        with serve(f"app-{label}-{name}", app_argv(), env, port, "/health/ready", cwd=args.app_root) as server:
            asyncio.run(concurrent_streams(server.url, [{**bodies[0], "max_new_tokens": 4}], 1))
            rows = []
            for concurrency in args.concurrency:
                print(f"  {name} {label}: {len(bodies)} streams, c={concurrency}", flush=True)
                stats = asyncio.run(concurrent_streams(server.url, bodies, concurrency))
                rows.append({"model": name, "mode": f"server {label} c={concurrency}", "backend": backend,
                             "dtype": dtype, "concurrency": concurrency, **stats, "rss_peak_bytes": server.rss.peak})
            if args.profile:
                out = args.out / f"generation_load-profile-{label}-{name}.svg"
                spy = py_spy(server.process.pid, rows[-1]["wall_s"], out)
                asyncio.run(concurrent_streams(server.url, bodies, max(args.concurrency)))
                spy.wait(timeout=rows[-1]["wall_s"] + 120)
                rows[-1]["profile"] = str(out)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | mode | requests | tokens | wall s | tokens/s | vs sequential | TTFT p50 ms | TTFT p99 ms | "
             "TTFT max ms | errors |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['mode']} | {r['requests']} | {r['tokens']} | {r['wall_s']:.1f} | "
              f"{r['tokens_per_s']:.1f} | {r['vs_sequential']:.2f}x | {r['ttft_p50_ms']:.0f} | "
              f"{r['ttft_p99_ms']:.0f} | {r['ttft_max_ms']:.0f} | {r['errors']} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--models", nargs="*", default=None, help="only these generators (default: all)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT, help="data root: prompts from sst2/test.tsv")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per run (the first N test sentences)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--backends", nargs="+", default=["onnx"], help="APP_BACKEND of the server runs")
    parser.add_argument("--torch-dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"],
                        help="the torch backend's server rows once per APP_TORCH_DTYPE (bf16: a GPU or a CPU with "
                             "avx512_bf16/AMX)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--profile", action="store_true",
                        help="a py-spy flame graph of the server under an extra run at the highest concurrency")
    parser.add_argument("--app-root", type=Path, default=REPO,
                        help="the checkout whose `python -m app` serves the server rows (e.g. a `git worktree` of an "
                             "earlier commit)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.server_env = dict(item.split("=", 1) for item in args.server_env)
    args.out.mkdir(parents=True, exist_ok=True)
    prompts = [ex.text for ex in read_examples(args.data / "sst2" / "test.tsv", "sentence", "label",
                                               ["negative", "positive"])][:args.prompts]
    rows: list[dict[str, Any]] = []
    for name in generators(args.models_dir, args.models):
        print(f"==> {name}: sequential HF generate", flush=True)
        base = sequential_hf(args.models_dir / name / "hf", prompts, args.new_tokens, args.threads)
        model_rows = [{"model": name, "mode": "sequential HF generate", "backend": "torch", "concurrency": 1,
                       **base}]
        for backend in args.backends:
            for dtype in args.torch_dtypes if backend == "torch" else ["fp32"]:
                model_rows += serve_rows(args, name, backend, prompts, dtype)
        rows += [r | {"vs_sequential": r["tokens_per_s"] / base["tokens_per_s"]} for r in model_rows]
    top = max(args.concurrency)
    checks = [f"- {r['model']} {r['mode']}: {r['vs_sequential']:.2f}x sequential tokens/s (target >= 4x): "
              f"{'met' if r['vs_sequential'] >= 4 else 'MISSED'}" for r in rows if r.get("concurrency") == top
              and r["mode"].startswith("server")]
    table = (f"{len(prompts)} prompts (SST-2 test sentences), {args.new_tokens} new tokens max, greedy, "
             f"{args.threads} thread(s)\n\n{markdown(rows)}\n\n" + "\n".join(checks))
    result = {"setup": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": machine_info(), "app_revision": git_revision(args.app_root), "rows": rows}
    write_results(args.out, "generation_load", result, table)
    if rows:
        grouped_bars(rows, [("tokens_per_s", "aggregate tokens/s", False), ("ttft_p50_ms", "TTFT p50 (ms)", True)],
                     "model", "mode", "generation: concurrent streams vs sequential HF generate",
                     args.out / "generation_load.png")


if __name__ == "__main__":
    main()
