"""Latency overhead of a protocol adapter over the native route it wraps: the same one-text request through
both, on one real `python -m app` server (uvicorn on 127.0.0.1), sequential, from one keep-alive httpx client.

    python benchmarks/protocol_overhead.py --models-dir models --requests 300

Each row pairs a native probe with an adapter probe on the same model. Requests alternate (native, adapter),
(adapter, native), ... so that drift (other processes, GC, caches) falls on both sides alike; after warm-up the
two answers are checked to agree. Reported: p50/p90/p99 per side, overhead = adapter p50 - native p50, and the
median of the per-iteration differences. Writes benchmarks/results/protocol_overhead.json and prints a table.

Rows (each runs when the models dir has a ready model of its task):
- ``v2-infer-json``: ``POST /v2/models/<classifier>/infer`` (JSON tensors) vs ``POST /v1/sentiment``;
- ``v2-infer-binary``: the same with binary tensors both ways (what `tritonclient.http` sends by default);
- ``v2-infer-embedding``: ``POST /v2/models/<embedder>/infer`` vs ``POST /v1/embeddings``.
Adding a row is one `Row` in `ROWS`, e.g. ``/v1/chat/completions`` vs ``/v1/completions`` on a text-generation
model: two `Probe`s (request kwargs for the model, and the answer to compare; greedy, a fixed ``max_tokens``).
Numbers, not assertions: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from servers import app_argv, app_env, free_port, machine_info, serve

RESULTS = Path(__file__).resolve().parent / "results"
TEXT = "A warm, funny and beautifully acted film."
HEADER = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Probe:
    route: str
    request: Callable[[str], dict[str, Any]]
    """Model name -> keyword arguments of `httpx.Client.request`."""
    answer: Callable[[httpx.Response], list[float]]
    """The numbers to compare between the two sides."""


@dataclass(frozen=True)
class Row:
    name: str
    task: str
    native: Probe
    adapter: Probe
    chat: bool = False
    """The model must have a chat template (manifest ``generation.chat_template``)."""


def _v2_json(model: str) -> dict[str, Any]:
    return {"method": "POST", "url": f"/v2/models/{model}/infer",
            "json": {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [TEXT]}]}}


def _v2_binary(model: str) -> dict[str, Any]:
    raw = TEXT.encode()
    blob = struct.pack("<I", len(raw)) + raw
    header = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(blob)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return {"method": "POST", "url": f"/v2/models/{model}/infer", "content": header + blob,
            "headers": {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}}


def _v2_output(response: httpx.Response, name: str) -> list[float]:
    """The FP32 output ``name`` of a v2 response, JSON or binary."""
    length = response.headers.get(HEADER)
    header = json.loads(response.content[:int(length)] if length else response.content)
    offset = int(length or 0)
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if output["name"] == name:
            if size is None:
                return [float(x) for x in output["data"]]
            return np.frombuffer(response.content[offset:offset + size], dtype="<f4").tolist()
        offset += size or 0
    raise KeyError(name)


SENTIMENT = Probe("POST /v1/sentiment",
                  lambda model: {"method": "POST", "url": "/v1/sentiment", "json": {"text": TEXT, "model": model}},
                  lambda r: list(r.json()["results"][0]["scores"].values()))
EMBEDDINGS = Probe("POST /v1/embeddings",
                   lambda model: {"method": "POST", "url": "/v1/embeddings", "json": {"input": TEXT, "model": model}},
                   lambda r: list(r.json()["data"][0]["embedding"]))
MESSAGES = [{"role": "user", "content": TEXT}]
CHAT_TOKENS = 8


def _chat_prompt(model: str, models_dir: Path) -> str:
    """The prompt /v1/chat/completions builds for MESSAGES: the model's own chat template, applied by
    transformers (an independent rendering of the same template)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models_dir / model / "hf")
    return str(tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False))


def _text_codes(text: str) -> list[float]:
    return [float(byte) for byte in text.encode()]


def chat_rows(models_dir: Path) -> list[Row]:
    completions = Probe("POST /v1/completions (the rendered prompt)",
                        lambda model: {"method": "POST", "url": "/v1/completions", "json": {
                            "model": model, "prompt": _chat_prompt(model, models_dir), "max_tokens": CHAT_TOKENS,
                            "temperature": 0}},
                        lambda r: _text_codes(r.json()["choices"][0]["text"]))
    chat = Probe("POST /v1/chat/completions",
                 lambda model: {"method": "POST", "url": "/v1/chat/completions", "json": {
                     "model": model, "messages": MESSAGES, "max_tokens": CHAT_TOKENS, "temperature": 0}},
                 lambda r: _text_codes(r.json()["choices"][0]["message"]["content"]))
    return [Row("openai-chat", "text-generation", completions, chat, chat=True)]


ROWS = [
    Row("v2-infer-json", "text-classification", SENTIMENT,
        Probe("POST /v2/models/{name}/infer (JSON)", _v2_json, lambda r: _v2_output(r, "probabilities"))),
    Row("v2-infer-binary", "text-classification", SENTIMENT,
        Probe("POST /v2/models/{name}/infer (binary)", _v2_binary, lambda r: _v2_output(r, "probabilities"))),
    Row("v2-infer-embedding", "sentence-embedding", EMBEDDINGS,
        Probe("POST /v2/models/{name}/infer (JSON)", _v2_json, lambda r: _v2_output(r, "embedding"))),
]


def _send(client: httpx.Client, request: dict[str, Any]) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.request(**request)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{request['url']}: {response.status_code} {response.text[:300]}")
    return seconds, response


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "min_ms": float(ms.min())}


def measure(client: httpx.Client, row: Row, model: str, requests: int, warmup: int) -> dict[str, Any]:
    sides = {"native": (row.native, row.native.request(model)), "adapter": (row.adapter, row.adapter.request(model))}
    answers = {}
    for _ in range(warmup):
        for side, (probe, request) in sides.items():
            answers[side] = probe.answer(_send(client, request)[1])
    if not np.allclose(answers["native"], answers["adapter"], atol=1e-5):
        raise RuntimeError(f"{row.name}: the two routes disagree: {answers}")
    times: dict[str, list[float]] = {"native": [], "adapter": []}
    for i in range(requests):
        for side in ("native", "adapter") if i % 2 == 0 else ("adapter", "native"):
            times[side].append(_send(client, sides[side][1])[0])
    native, adapter = _stats(times["native"]), _stats(times["adapter"])
    paired = statistics.median(a - n for a, n in zip(times["adapter"], times["native"], strict=True)) * 1000
    return {"row": row.name, "model": model, "native_route": row.native.route, "adapter_route": row.adapter.route,
            "requests": requests, "native": native, "adapter": adapter,
            "overhead_ms": adapter["p50_ms"] - native["p50_ms"],
            "overhead_pct": 100 * (adapter["p50_ms"] - native["p50_ms"]) / native["p50_ms"],
            "paired_median_overhead_ms": paired}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| row | model | native route | p50 ms | adapter route | p50 ms | overhead ms (p50) | overhead % | "
             "paired median ms |", "|---|---|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['model']} | {r['native_route']} | {r['native']['p50_ms']:.2f} | "
                     f"{r['adapter_route']} | {r['adapter']['p50_ms']:.2f} | {r['overhead_ms']:+.2f} | "
                     f"{r['overhead_pct']:+.1f} | {r['paired_median_overhead_ms']:+.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--requests", type=int, default=300, help="Timed requests per side and row (>= 200).")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    parser.add_argument("--threads", type=int, default=1)
    names = [r.name for r in [*ROWS, *chat_rows(Path())]]
    parser.add_argument("--rows", nargs="*", default=names, choices=names)
    parser.add_argument("--out", type=Path, default=RESULTS / "protocol_overhead.json")
    args = parser.parse_args(argv)
    port = free_port()
    env = app_env(args.models_dir.resolve(), port, args.backend, args.threads, {})
    results = []
    with serve("app", app_argv(), env, port, "/health/ready") as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        listed = [m for m in client.get("/v1/models").json()["models"] if m["status"] == "ready"]
        ready, chatty = {}, {}
        for m in listed:
            ready.setdefault(m["task"], m["name"])
            manifest = json.loads((args.models_dir / m["name"] / "manifest.json").read_text())
            if manifest.get("generation", {}).get("chat_template"):
                chatty.setdefault(m["task"], m["name"])
        for row in (r for r in [*ROWS, *chat_rows(args.models_dir)] if r.name in args.rows):
            candidates = chatty if row.chat else ready
            if row.task not in candidates:
                print(f"skipped {row.name}: no ready {row.task} model in {args.models_dir}", file=sys.stderr)
                continue
            results.append(measure(client, row, candidates[row.task], args.requests, args.warmup))
            print(f"{row.name}: done", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine_info(),
        "settings": {"models_dir": str(args.models_dir), "backend": args.backend, "threads": args.threads,
                     "requests": args.requests, "warmup": args.warmup, "text": TEXT},
        "rows": results}, indent=2))
    print(table(results))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
