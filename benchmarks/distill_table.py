"""Teacher vs distilled student: params, size on disk, test accuracy and ONNX Runtime CPU latency.

    python benchmarks/distill_table.py --models-dir models --teacher sentiment-minilm \
        --student sentiment-minilm-student

Both models run in the same process with the same SessionOptions and intra-op threads; their runs are
interleaved (alternating order) so background load hits both alike. Writes benchmarks/results/distill.json,
distill.md and distill.png, and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
from report import write_results
from safetensors import safe_open
from tqdm import tqdm
from transformers import AutoTokenizer

from training.classification.data import read_examples
from training.config import DEFAULT_DATA_ROOT

RESULTS = Path(__file__).resolve().parent / "results"
BATCHES = (1, 32)


def artifact_facts(path: Path) -> dict[str, Any]:
    """Params (from the safetensors headers), bytes on disk, ONNX bytes and test accuracy of one artifact."""
    manifest = json.loads((path / "manifest.json").read_text())
    with safe_open(str(path / manifest["hf_dir"] / "model.safetensors"), framework="numpy") as fh:
        params = sum(int(np.prod(fh.get_slice(key).get_shape())) for key in fh.keys())  # noqa: SIM118
    return {"name": manifest["name"], "params": params,
            "artifact_bytes": sum(p.stat().st_size for p in path.rglob("*") if p.is_file()),
            "onnx_bytes": (path / manifest["onnx"]["model"]).stat().st_size,
            "test_accuracy": manifest["metrics"].get("test_accuracy"), "max_length": manifest["max_length"],
            "manifest": manifest}


def make_feeds(path: Path, texts: list[str], batch: int, count: int, max_length: int) -> list[dict[str, Any]]:
    """``count`` batches of consecutive real sentences, tokenized by the artifact's own tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(path / "hf")
    feeds = []
    for i in range(count):
        start = (i * batch) % max(1, len(texts) - batch)
        enc = tokenizer(texts[start:start + batch], padding=True, truncation=True, max_length=max_length,
                        return_tensors="np")
        feeds.append({"input_ids": enc["input_ids"].astype(np.int64),
                      "attention_mask": enc["attention_mask"].astype(np.int64)})
    return feeds


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure(paths: dict[str, Path], facts: dict[str, dict[str, Any]], texts: list[str], threads: int,
            warmup: int, runs: int) -> dict[str, dict[str, dict[str, float]]]:
    """{role: {"batch_<n>": {median_ms, p90_ms, mean_ms}}} with interleaved, alternating-order runs."""
    sessions = {role: session(path / facts[role]["manifest"]["onnx"]["model"], threads)
                for role, path in paths.items()}
    out: dict[str, dict[str, dict[str, float]]] = {role: {} for role in paths}
    for batch in BATCHES:
        feeds = {role: make_feeds(path, texts, batch, warmup + runs, facts[role]["max_length"])
                 for role, path in paths.items()}
        times: dict[str, list[float]] = {role: [] for role in paths}
        roles = list(paths)
        for i in tqdm(range(warmup + runs), desc=f"batch {batch}", unit="run"):
            for role in roles if i % 2 == 0 else roles[::-1]:
                start = time.perf_counter()
                sessions[role].run(["logits"], feeds[role][i])
                if i >= warmup:
                    times[role].append((time.perf_counter() - start) * 1000)
        for role, values in times.items():
            out[role][f"batch_{batch}"] = {"median_ms": statistics.median(values),
                                           "p90_ms": float(np.percentile(values, 90)),
                                           "mean_ms": statistics.fmean(values)}
    return out


def markdown(result: dict[str, Any]) -> str:
    rows = ["| model | params | size on disk (artifact / model.onnx) | test accuracy | latency b=1 (ms) | "
            "latency b=32 (ms) |", "|---|---:|---:|---:|---:|---:|"]
    for role in ("teacher", "student"):
        m = result[role]
        acc = f"{m['test_accuracy']:.4f}" if m["test_accuracy"] is not None else "n/a"
        rows.append(f"| {role}: {m['name']} | {m['params'] / 1e6:.1f} M | {m['artifact_bytes'] / 2**20:.0f} MiB / "
                    f"{m['onnx_bytes'] / 2**20:.0f} MiB | {acc} | {m['latency']['batch_1']['median_ms']:.2f} | "
                    f"{m['latency']['batch_32']['median_ms']:.1f} |")
    r = result["ratios"]
    rows.append(f"| student / teacher | {r['params']:.2f}x | {r['onnx_bytes']:.2f}x | {r['accuracy']:.3f} | "
                f"{r['latency_batch_1']:.2f}x | {r['latency_batch_32']:.2f}x |")
    return "\n".join(rows) + f"\n\nONNX Runtime CPU, {result['threads']} intra-op thread(s), median of " \
                             f"{result['runs']} interleaved runs after {result['warmup']} warm-up runs.\n"


def plot(result: dict[str, Any], out: Path) -> None:
    panels = [("params (M)", lambda m: m["params"] / 1e6), ("model.onnx (MiB)", lambda m: m["onnx_bytes"] / 2**20),
              ("test accuracy", lambda m: m["test_accuracy"] or 0.0),
              ("latency b=1 (ms)", lambda m: m["latency"]["batch_1"]["median_ms"]),
              ("latency b=32 (ms)", lambda m: m["latency"]["batch_32"]["median_ms"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, value) in zip(axes, panels, strict=True):
        values = [value(result[role]) for role in ("teacher", "student")]
        bars = ax.bar(["teacher", "student"], values, color=["#4c72b0", "#dd8452"])
        ax.bar_label(bars, fmt="%.3g")
        ax.set_title(title)
    fig.suptitle(f"{result['teacher']['name']} vs {result['student']['name']} "
                 f"(latency ratio b=1 {result['ratios']['latency_batch_1']:.2f}x, "
                 f"b=32 {result['ratios']['latency_batch_32']:.2f}x)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--teacher", default="sentiment-minilm")
    parser.add_argument("--student", default="sentiment-minilm-student")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_ROOT / "sst2")
    parser.add_argument("--test-file", default="test.tsv")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, the same for both models")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    paths = {"teacher": args.models_dir / args.teacher, "student": args.models_dir / args.student}
    facts = {role: artifact_facts(path) for role, path in paths.items()}
    labels = facts["teacher"]["manifest"]["labels"]
    texts = [ex.text for ex in read_examples(args.data_dir / args.test_file, "sentence", "label", labels)]
    latency = measure(paths, facts, texts, args.threads, args.warmup, args.runs)
    result: dict[str, Any] = {"threads": args.threads, "warmup": args.warmup, "runs": args.runs,
                              "data": str(args.data_dir / args.test_file), "onnxruntime": ort.__version__}
    for role in paths:
        result[role] = {k: v for k, v in facts[role].items() if k != "manifest"} | {"latency": latency[role]}
    t, s = result["teacher"], result["student"]
    result["ratios"] = {
        "params": s["params"] / t["params"], "onnx_bytes": s["onnx_bytes"] / t["onnx_bytes"],
        "accuracy": (s["test_accuracy"] or 0.0) / t["test_accuracy"] if t["test_accuracy"] else 0.0,
        **{f"latency_batch_{b}": s["latency"][f"batch_{b}"]["median_ms"] / t["latency"][f"batch_{b}"]["median_ms"]
           for b in BATCHES}}
    write_results(args.out, "distill", result, markdown(result))
    plot(result, args.out / "distill.png")


if __name__ == "__main__":
    main()
