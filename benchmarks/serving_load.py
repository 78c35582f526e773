"""Classification under load: naive FastAPI + pipeline vs LitServe vs this server, one command, same sentences.

    python benchmarks/serving_load.py --models-dir models --duration 20 --warmup 5 --concurrency 1 8 32

One server at a time, each its own process on a free port: (a) benchmarks/baselines/naive_server.py, (b)
benchmarks/baselines/litserve_server.py (batching on), both with the teacher's HF folder in torch; (c)
`python -m app` on a models dir of symlinks to the one artifact a row needs: torch fp32 teacher, onnx fp32
teacher, onnx int8 teacher, onnx fp32 student, onnx int8 student (int8 rows only when the manifest has
`onnx.variants.int8`). Each row: single-text POSTs rotating over the SST-2 test sentences, closed loop with
`wrk` at each concurrency, warm-up then a fixed duration; the server's tree RSS is sampled throughout.
Then a memory row: `python -m app` with every model in --models-dir, RSS when ready, under load, after it.
Writes benchmarks/results/serving_load.{json,md,png} and prints the table and the issue's targets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from report import (
    add_ratios,
    check_targets,
    grouped_bars,
    int8_accuracy,
    serving_markdown,
    targets_markdown,
    write_results,
)
from servers import (
    REPO,
    Server,
    app_argv,
    app_env,
    free_port,
    git_revision,
    linked_models,
    machine_info,
    py_spy,
    serve,
    tree_pss,
)
from wrk import run_wrk

from contract import LEGACY_CLASSIFICATION, SENTENCE_EMBEDDING, TEXT_CLASSIFICATION
from training.classification.data import read_examples
from training.config import DEFAULT_DATA_ROOT

RESULTS = REPO / "benchmarks" / "results"
BASELINE_SCRIPTS = {"naive": "naive_server.py", "litserve": "litserve_server.py"}


@dataclass
class Config:
    """One row family: which server, which model it serves under which name, and that model's test accuracy."""

    config: str
    role: str
    artifact: str
    served_as: str
    backend: str
    precision: str
    accuracy: float | None


def plan(models_dir: Path, teacher: str, student: str,
         torch_dtypes: tuple[str, ...] = ("fp32",)) -> tuple[list[Config], list[str]]:
    """Every row this models dir allows, and a note for each one skipped; the torch teacher once per dtype."""
    configs, notes = [], []
    for role, name in (("teacher", teacher), ("student", student)):
        path = models_dir / name / "manifest.json"
        if not path.is_file():
            notes.append(f"{role} {name}: no {path}; its rows are skipped")
            continue
        manifest = json.loads(path.read_text())
        accuracy = manifest.get("metrics", {}).get("test_accuracy")
        if role == "teacher":
            configs += [Config(kind, role, name, name, "torch", "fp32", accuracy) for kind in BASELINE_SCRIPTS]
            configs += [Config(f"app-torch-{role}" if dtype == "fp32" else f"app-torch-{dtype}-{role}", role, name,
                               name, "torch", dtype, accuracy) for dtype in torch_dtypes]
        configs.append(Config(f"app-onnx-{role}", role, name, name, "onnx", "fp32", accuracy))
        has_int8, int8_acc = int8_accuracy(manifest)
        if has_int8:
            configs.append(Config(f"app-onnx-int8-{role}", role, name, f"{name}-int8", "onnx", "int8", int8_acc))
        else:
            notes.append(f"{role} {name}: no onnx.variants.int8 in its manifest; int8 row skipped")
    return configs, notes


def sentences(data_root: Path, limit: int | None) -> list[str]:
    texts = [ex.text for ex in read_examples(data_root / "sst2" / "test.tsv", "sentence", "label",
                                             ["negative", "positive"])]
    return texts[:limit] if limit else texts


def start(config: Config, args: argparse.Namespace, models: Path | None) -> AbstractContextManager[Server]:
    """The context manager serving ``config`` (``models``: the symlinked models dir of an app row)."""
    port = free_port()
    if config.config in BASELINE_SCRIPTS:
        script = REPO / "benchmarks" / "baselines" / BASELINE_SCRIPTS[config.config]
        workers = args.litserve_workers if config.config == "litserve" else 1
        argv = [sys.executable, str(script), "--model", str(args.models_dir / config.artifact / "hf"),
                "--port", str(port), "--threads", str(max(1, args.threads // workers)), "--device", args.device]
        if workers > 1:
            argv += ["--workers", str(workers)]
        return serve(config.config, argv, {"TOKENIZERS_PARALLELISM": "false"}, port, "/health")
    assert models is not None
    env = server_env(models, port, config.backend, args)
    if config.backend == "torch" and "APP_TORCH_DTYPE" not in args.server_env:
        env["APP_TORCH_DTYPE"] = config.precision
    return serve(config.config, app_argv(), env, port, "/health/ready", cwd=args.app_root)


def server_env(models: Path, port: int, backend: str, args: argparse.Namespace) -> dict[str, str]:
    """`python -m app` with the same CPU threads as the baselines: --app-concurrency inferences at once, the
    threads divided among them."""
    extra = {"APP_DEVICE": args.device, "APP_MAX_CONCURRENCY": str(args.app_concurrency), **args.server_env}
    return app_env(models, port, backend, args.app_threads, extra)


def bodies(config: Config, texts: list[str]) -> list[dict[str, Any]]:
    if config.config in BASELINE_SCRIPTS:
        return [{"text": t} for t in texts]
    return [{"text": t, "model": config.served_as} for t in texts]


def load_rows(server: Server, config: Config, texts: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Warm-up then a measured wrk run at each concurrency against a ready server."""
    url, payload = f"{server.url}/v1/sentiment", bodies(config, texts)
    probe = httpx.post(url, json=payload[0], timeout=60)
    if probe.status_code != 200:
        raise RuntimeError(f"{config.config}: probe request answered {probe.status_code}: {probe.text[:500]}")
    rows = []
    for concurrency in args.concurrency:
        print(f"  {config.config}: c={concurrency} warm-up {args.warmup}s, measure {args.duration}s", flush=True)
        if args.warmup > 0:
            run_wrk(url, payload, args.warmup, concurrency, args.wrk_threads, args.timeout)
        result = run_wrk(url, payload, args.duration, concurrency, args.wrk_threads, args.timeout)
        rows.append(asdict(config) | result.as_dict() | {
            "concurrency": concurrency, "ready_s": server.ready_s, "rss_ready_bytes": server.rss_ready,
            "rss_peak_bytes": server.rss.peak, "rss_end_bytes": server.rss.sample(),
            "pss_end_bytes": tree_pss(server.rss.process)})
    if args.profile:
        out = args.out / f"serving_load-profile-{config.config}.svg"
        print(f"  {config.config}: py-spy during an extra, unrecorded run at c={max(args.concurrency)}", flush=True)
        spy = py_spy(server.process.pid, args.duration, out)
        run_wrk(url, payload, args.duration, max(args.concurrency), args.wrk_threads, args.timeout)
        spy.wait(timeout=args.duration + 120)
        rows[-1]["profile"] = str(out)
    return rows


def memory_row(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    """`python -m app` with every model of --models-dir: RSS ready, then under load on each model, then after."""
    port = free_port()
    env = server_env(args.models_dir.resolve(), port, args.memory_backend, args)
    with serve("memory", app_argv(), env, port, "/health/ready", cwd=args.app_root) as server:
        models = [m for m in httpx.get(f"{server.url}/v1/models", timeout=30).json()["models"]
                  if m["status"] == "ready"]
        loads = {}
        for model in models:
            name, top = model["name"], max(args.concurrency)
            print(f"  memory: load on {name} for {args.duration}s", flush=True)
            if model["task"] in (TEXT_CLASSIFICATION, LEGACY_CLASSIFICATION):
                result = run_wrk(f"{server.url}/v1/sentiment", [{"text": t, "model": name} for t in texts],
                                 args.duration, top, args.wrk_threads, args.timeout)
            elif model["task"] == SENTENCE_EMBEDDING:
                result = run_wrk(f"{server.url}/v1/embeddings", [{"input": t, "model": name} for t in texts],
                                 args.duration, top, args.wrk_threads, args.timeout)
            else:
                prompts = [{"prompt": t, "max_new_tokens": 32, "model": name} for t in texts[:64]]
                result = run_wrk(f"{server.url}/v1/generate", prompts, args.duration, min(8, top),
                                 args.wrk_threads, timeout_s=120)
            loads[name] = {"task": model["task"], "rps": result.rps, "p99_ms": result.p99_ms,
                           "errors": result.errors, "status": result.status}
        return {"backend": args.memory_backend, "models": [m["name"] for m in models], "ready_s": server.ready_s,
                "rss_ready_bytes": server.rss_ready, "rss_peak_bytes": server.rss.peak,
                "rss_after_bytes": server.rss.sample(), "pss_after_bytes": tree_pss(server.rss.process),
                "loads": loads}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT, help="data root holding sst2/test.tsv")
    parser.add_argument("--sentences", type=int, default=None, help="use only the first N test sentences")
    parser.add_argument("--teacher", default="sentiment-minilm")
    parser.add_argument("--student", default="sentiment-minilm-student")
    parser.add_argument("--configs", nargs="*", default=None, help="only these rows (e.g. naive app-onnx-teacher)")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds per concurrency")
    parser.add_argument("--warmup", type=float, default=5, help="warm-up seconds per concurrency (not measured)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU threads each server may use for inference (torch.set_num_threads of the "
                             "baselines; APP_THREADS x APP_MAX_CONCURRENCY of this server)")
    parser.add_argument("--app-concurrency", type=int, default=min(2, len(os.sched_getaffinity(0))),
                        help="APP_MAX_CONCURRENCY of this server (its default): rounds run at once")
    parser.add_argument("--litserve-workers", type=int, default=1,
                        help="LitServe inference workers (workers_per_device), the threads divided among them")
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for every server")
    parser.add_argument("--torch-dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"],
                        help="a torch teacher row per APP_TORCH_DTYPE (bf16: a GPU or a CPU with avx512_bf16/AMX); "
                             "its accuracy column is the fp32 manifest's")
    parser.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra environment of `python -m app` (e.g. APP_TORCH_DTYPE=bf16)")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10, help="wrk socket timeout, seconds")
    parser.add_argument("--memory-backend", default="onnx", help="APP_BACKEND of the every-model memory row")
    parser.add_argument("--no-memory", action="store_true", help="skip the every-model memory row")
    parser.add_argument("--profile", action="store_true",
                        help="per row, a py-spy flame graph of the server during an extra run at the top concurrency")
    parser.add_argument("--app-root", type=Path, default=REPO,
                        help="the checkout whose `python -m app` serves the app rows (e.g. a `git worktree` of an "
                             "earlier commit; the baselines and this script stay this checkout's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.server_env = dict(item.split("=", 1) for item in args.server_env)
    args.app_threads = max(1, args.threads // args.app_concurrency)
    return args


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    texts = sentences(args.data, args.sentences)
    configs, notes = plan(args.models_dir, args.teacher, args.student, tuple(args.torch_dtypes))
    rows: list[dict[str, Any]] = []
    for config in (c for c in configs if not args.configs or c.config in args.configs):
        print(f"==> {config.config} ({config.served_as}, {config.backend} {config.precision})", flush=True)
        try:
            if config.config in BASELINE_SCRIPTS:
                with start(config, args, None) as server:
                    rows += load_rows(server, config, texts, args)
            else:
                with linked_models(args.models_dir, [config.artifact]) as models, \
                        start(config, args, models) as server:
                    rows += load_rows(server, config, texts, args)
        except RuntimeError as exc:
            notes.append(f"{config.config} failed: {exc}")
            print(f"  FAILED: {exc}", file=sys.stderr)
    rows = add_ratios(rows)
    memory = None
    if not args.no_memory:
        try:
            memory = memory_row(args, texts)
        except RuntimeError as exc:
            notes.append(f"memory row failed: {exc}")
    reference = 32 if 32 in args.concurrency else max(args.concurrency)
    teacher_acc = next((c.accuracy for c in configs if c.config == "app-onnx-teacher"), None)
    checks = check_targets(rows, reference, teacher_acc, memory)
    setup = (f"{len(texts)} SST-2 test sentences, one per request, wrk -t{args.wrk_threads} closed loop, "
             f"{args.warmup:g}s warm-up + {args.duration:g}s per concurrency, {args.threads} inference thread(s) "
             f"per server (this server: {args.app_concurrency} at once x {args.app_threads} thread(s)), "
             f"device {args.device}; client CPU = wrk's user+sys seconds in the measured run; RSS = the server's "
             "process tree summed (LitServe runs several processes: shared pages count in each), PSS splits them")
    parts = [setup, serving_markdown(rows), targets_markdown(checks), "\n".join(f"- {n}" for n in notes)]
    table = "\n\n".join(p for p in parts if p)
    if memory is not None:
        table += (f"\n\nmemory ({memory['backend']}, every model: {', '.join(memory['models'])}): "
                  f"ready {memory['rss_ready_bytes'] / 2**20:.0f} MiB, peak {memory['rss_peak_bytes'] / 2**20:.0f} "
                  f"MiB, after load {memory['rss_after_bytes'] / 2**20:.0f} MiB")
    result = {"setup": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": machine_info(), "app_revision": git_revision(args.app_root),
              "sentences": len(texts), "reference_concurrency": reference,
              "rows": rows, "memory": memory, "targets": checks, "notes": notes}
    write_results(args.out, "serving_load", result, table)
    if rows:
        grouped_bars(rows, [("rps", "req/s", False), ("p99_ms", "p99 latency (ms, log)", True)], "config",
                     "concurrency", "single-text classification under load", args.out / "serving_load.png")


if __name__ == "__main__":
    main()
