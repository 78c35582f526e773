"""Serving latency of one short text, torch backend (the baseline) vs onnx, plus start-up time to ready.

    python benchmarks/serving_latency.py --models-dir models --requests 300 --threads 2

For each backend a real `python -m app` process is started on a free port; the time from process start
to `/health/ready` = 200 is the start-up time. Then, per served model, sequential single-text
`POST /v1/sentiment` requests from one keep-alive client (after warm-up) give p50/p95/p99. Writes
benchmarks/results/serving_latency.json and prints a table. Numbers, not assertions: nothing here fails
on a slow machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

RESULTS = Path(__file__).resolve().parent / "results"
TEXT = "A warm, funny and beautifully acted film."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(models_dir: Path, backend: str, threads: int) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    env = {**os.environ, "APP_MODELS_DIR": str(models_dir), "APP_BACKEND": backend, "APP_THREADS": str(threads),
           "APP_PORT": str(port), "APP_HOST": "127.0.0.1", "APP_LOG_LEVEL": "WARNING"}
    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "app"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - began < 300:
        if process.poll() is not None:
            raise RuntimeError(f"{backend} server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return process, url, time.perf_counter() - began
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{backend} server not ready in 300 s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(url: str, model: str, requests: int, warmup: int) -> dict[str, float]:
    times = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in tqdm(range(warmup + requests), desc=model, unit="req", leave=False):
            began = time.perf_counter()
            response = client.post("/v1/sentiment", json={"text": TEXT, "model": model})
            elapsed = time.perf_counter() - began
            response.raise_for_status()
            if i >= warmup:
                times.append(elapsed * 1000)
    return {"p50_ms": statistics.median(times), "p95_ms": percentile(times, 0.95),
            "p99_ms": percentile(times, 0.99), "mean_ms": statistics.fmean(times), "requests": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    results: dict[str, Any] = {"text": TEXT, "threads": args.threads, "cpus": os.cpu_count(), "backends": {}}
    for backend in ("torch", "onnx"):
        process, url, startup = start(args.models_dir, backend, args.threads)
        try:
            models = [m["name"] for m in httpx.get(f"{url}/v1/models").json()["models"]
                      if m["status"] == "ready" and m["task"] == "sentiment"]
            results["backends"][backend] = {"startup_to_ready_s": startup,
                                            "models": {m: measure(url, m, args.requests, args.warmup)
                                                       for m in models}}
        finally:
            process.terminate()
            process.wait(timeout=30)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serving_latency.json").write_text(json.dumps(results, indent=2))
    print(f"\none short text, {args.requests} sequential requests, {args.threads} threads\n")
    print("| backend | model | start-up to ready (s) | p50 (ms) | p95 (ms) | p99 (ms) | p50 vs torch |")
    print("|---|---|---|---|---|---|---|")
    torch_models = results["backends"]["torch"]["models"]
    for backend, entry in results["backends"].items():
        for model, stats in entry["models"].items():
            ratio = stats["p50_ms"] / torch_models[model]["p50_ms"] if model in torch_models else float("nan")
            print(f"| {backend} | {model} | {entry['startup_to_ready_s']:.1f} | {stats['p50_ms']:.1f} | "
                  f"{stats['p95_ms']:.1f} | {stats['p99_ms']:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
