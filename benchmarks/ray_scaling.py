"""Ray Serve replicas vs plain uvicorn: req/s and latency of POST /v1/sentiment, same model, same run.

    python benchmarks/ray_scaling.py                        # builds a tiny and a MiniLM-L6 classifier artifact
    python benchmarks/ray_scaling.py --models-dir models --model sentiment-minilm --concurrency 1 32

Rows, one server at a time, every one with 1 inference thread per process (APP_THREADS=1, APP_MAX_CONCURRENCY=1):
`python -m app` (uvicorn), then `python -m app.serve_ray` (`serve run` of deploy/ray/serve.yaml on a fresh local
Ray instance) with 1 and with 2 replicas of 1 CPU each. Closed loop with `wrk` (1 thread) at each concurrency.
The scaling ratio is req/s of 2 replicas / 1 replica; Ray's per-request overhead is its p50 latency at c=1 minus
uvicorn's, and its req/s at c=32 relative to uvicorn's. Without --models-dir, two artifacts are exported by the
training code: `tiny` (2-layer 32-dim BERT: the cost is the serving path) and `minilm` (all-MiniLM-L6-v2 with an
untrained 2-label head: the compute of sentiment-minilm). Writes benchmarks/results/ray_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from servers import REPO, Server, app_argv, app_env, free_port, linked_models, machine_info, serve
from wrk import run_wrk

sys.path.insert(0, str(REPO))  # tests.conftest: the tiny BERT the tests build

from tests.conftest import LABELS, make_sentences, make_tiny_base
from training.classification.data import read_examples
from training.config import DEFAULT_DATA_ROOT, default_base_model

RESULTS = REPO / "benchmarks" / "results"


def export_untrained(base: str, models_dir: Path, name: str, max_length: int) -> Path:
    """A text-classification artifact of ``base`` with a fresh 2-label head, written by the training export."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.export.text_classification import export_classifier

    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    return export_classifier(model, AutoTokenizer.from_pretrained(base), models_dir, name, labels=LABELS,
                             base_model=base, max_length=max_length, metrics={},
                             training={"note": "untrained head: benchmarks/ray_scaling.py"})


def texts(limit: int = 200) -> list[str]:
    test = DEFAULT_DATA_ROOT / "sst2" / "test.tsv"
    if test.is_file():
        return [e.text for e in read_examples(test, "sentence", "label", LABELS)][:limit]
    return [text for text, _ in make_sentences(limit)]


def wait_for_replicas(server: Server, replicas: int, timeout_s: float = 300) -> set[str]:
    """Until ``replicas`` distinct X-Replica headers have answered POST /v1/sentiment."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.url, timeout=30) as client:
        while len(seen) < replicas:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only replicas {seen} answered in {timeout_s:.0f} s")
            response = client.post("/v1/sentiment", json={"text": "warm"})
            if response.status_code == 200:
                seen.add(response.headers["x-replica"])
    return seen


def ray_argv(replicas: int, port: int) -> list[str]:
    return [sys.executable, "-m", "app.serve_ray", "--replicas", str(replicas), "--num-cpus", "1",
            "--port", str(port)]


def measure(name: str, model: str, models: Path, replicas: int, args: argparse.Namespace,
            bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    port = free_port()
    env = app_env(models, port, "onnx", 1, {"APP_MAX_CONCURRENCY": "1", "APP_LOG_LEVEL": "WARNING"})
    argv = app_argv() if replicas == 0 else ray_argv(replicas, port)
    rows = []
    with serve(name, argv, env, port, "/health/ready") as server:
        if replicas:
            wait_for_replicas(server, replicas)
        for concurrency in args.concurrency:
            print(f"  {model} {name}: c={concurrency} warm-up {args.warmup}s, measure {args.duration}s", flush=True)
            url = f"{server.url}/v1/sentiment"
            run_wrk(url, bodies, args.warmup, concurrency)
            result = run_wrk(url, bodies, args.duration, concurrency)
            rows.append({"model": model, "server": name, "replicas": replicas, "concurrency": concurrency,
                         "ready_s": round(server.ready_s, 1), "rss_peak_mib": server.rss.peak // 2**20,
                         "load_avg_1m_after": os.getloadavg()[0], **result.as_dict()})
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per model: the scaling ratio at the highest concurrency and Ray's overhead against uvicorn."""
    out: dict[str, dict[str, float]] = {}
    for model in sorted({r["model"] for r in rows}):
        def row(server: str, c: int, model: str = model) -> dict[str, Any] | None:
            return next((r for r in rows if r["model"] == model and r["server"] == server
                         and r["concurrency"] == c), None)
        top, low = max(r["concurrency"] for r in rows), min(r["concurrency"] for r in rows)
        one, two, plain = row("ray-1", top), row("ray-2", top), row("uvicorn", top)
        facts: dict[str, float] = {}
        if one and two:
            facts[f"scaling_2_vs_1_replica_at_c{top}"] = round(two["rps"] / one["rps"], 3)
        if one and plain:
            facts[f"ray_1_replica_vs_uvicorn_rps_at_c{top}"] = round(one["rps"] / plain["rps"], 3)
        one_low, plain_low = row("ray-1", low), row("uvicorn", low)
        if one_low and plain_low:
            facts[f"ray_overhead_p50_ms_at_c{low}"] = round(one_low["p50_ms"] - plain_low["p50_ms"], 2)
            facts[f"uvicorn_p50_ms_at_c{low}"] = round(plain_low["p50_ms"], 2)
        out[model] = facts
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | server | c | req/s | p50 ms | p99 ms | errors | peak RSS MiB | load 1m |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['server']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['errors']} | {r['rss_peak_mib']} | {r['load_avg_1m_after']:.1f} |"
              for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, help="serve --model from here instead of exporting two")
    parser.add_argument("--model", default="sentiment-minilm")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "ray_scaling.json")
    parser.add_argument("--work", type=Path, help="keep the exported artifacts here (reused by the next run)")
    args = parser.parse_args()
    bodies = [{"text": t} for t in texts()]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ray-scaling-") as tmp:
        work = args.work or Path(tmp)
        if args.models_dir:
            artifacts = {args.model: args.models_dir / args.model}
        else:
            artifacts = {name: work / "models" / name for name in ("tiny", "minilm")}
            if not all((path / "manifest.json").is_file() for path in artifacts.values()):
                print("exporting the tiny and the MiniLM-L6 classifier artifacts", flush=True)
                tiny = make_tiny_base(work / "tiny-base")
                export_untrained(str(tiny), work / "models", "tiny", 32)
                export_untrained(default_base_model(), work / "models", "minilm", 128)
        for model, artifact in artifacts.items():
            with linked_models(artifact.parent, [artifact.name]) as models:
                for name, replicas in (("uvicorn", 0), ("ray-1", 1), ("ray-2", 2)):
                    rows += measure(name, model, models, replicas, args, bodies)
    report = {"machine": machine_info(), "settings": {"concurrency": args.concurrency, "duration_s": args.duration,
                                                      "threads_per_process": 1, "wrk_threads": 1},
              "summary": summary(rows), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(rows))
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
