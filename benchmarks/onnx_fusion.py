"""ONNX Runtime attention fusion on the CPU for every text-classification artifact: fused ops, parity, latency,
accuracy, and where the time goes.

    flock /tmp/cpu-measure.lock nice -n 0 python benchmarks/onnx_fusion.py --threads 2
    python benchmarks/onnx_fusion.py --models sentiment-minilm sentiment-minilm-student --threads 1

Each artifact's fp32 ``model.onnx`` (the torch dynamo export) is rewritten by two routes into fused graphs (written
to ``--work``, a temporary folder by default; the artifact is not touched):

- ``onnxscript``: ``onnxscript.rewriter.ort_fusions.optimize_for_ort`` (Attention, SkipLayerNormalization,
  BiasGelu... of the ``com.microsoft`` domain);
- ``ort-optimizer``: ``onnxruntime.transformers.optimizer.optimize_model`` (model_type bert, num_heads and
  hidden_size from the artifact's ``hf/config.json``, opt_level 0: its own fusions only).

Per graph: op counts by type in the file and in the graph ONNX Runtime runs after its own optimisations at load
(``ORT_ENABLE_ALL``, which already fuses some patterns itself), the fused (``com.microsoft``) ops, parity (max abs
logit difference against fp32 over the real SST-2 test sentences: each alone, and 32 per call padded to the longest
in file order), test accuracy (those 32-per-call logits), latency at batch 1 and 32 (the server's SessionOptions,
``app.runtimes.onnx.session_options``, ``--threads`` intra-op threads; runs of the graphs interleaved, the order
rotating, median) and the share of kernel time per op type (ONNX Runtime's profiler, a few extra runs).

Writes ``--out`` (default benchmarks/results/onnx_fusion.json) and a plot beside it (same name, .png), and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx_ops import fused_op_counts, kernel_time_shares, op_counts
from onnxruntime.transformers.optimizer import optimize_model
from onnxscript.rewriter.ort_fusions import optimize_for_ort
from report import grouped_bars
from tokenizers import Tokenizer
from tqdm import tqdm

from app.runtimes.onnx import session_options
from contract import TEXT_CLASSIFICATION, Artifact, canonical_task, discover, load_schema, open_artifact, read_manifest
from training.classification.data import read_examples
from training.classification.onnx_classifier import serving_tokenizer
from training.config import DEFAULT_DATA_ROOT

RESULTS = Path(__file__).resolve().parent / "results"
BATCHES = (1, 32)
FP32 = "fp32"
PARITY_LIMIT = 1e-4
PROFILE_RUNS = 5


def fuse_onnxscript(source: Path, target: Path, config: dict[str, Any]) -> dict[str, int]:
    model = ir.load(source)
    model, applied = optimize_for_ort(model)
    ir.save(model, target)
    return {name: count for name, count in applied.items() if count}


def fuse_ort_optimizer(source: Path, target: Path, config: dict[str, Any]) -> dict[str, int]:
    optimizer = optimize_model(str(source), model_type="bert", num_heads=config["num_attention_heads"],
                               hidden_size=config["hidden_size"], opt_level=0, use_gpu=False)
    optimizer.save_model_to_file(str(target))
    return {name: count for name, count in optimizer.get_fused_operator_statistics().items() if count}


ROUTES: dict[str, Callable[[Path, Path, dict[str, Any]], dict[str, int]]] = {
    "onnxscript": fuse_onnxscript, "ort-optimizer": fuse_ort_optimizer}


def session(path: Path, threads: int, **extra: Any) -> ort.InferenceSession:
    options = session_options(threads)
    options.log_severity_level = 3
    for key, value in extra.items():
        setattr(options, key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def loaded_graph_counts(path: Path, work: Path, threads: int) -> dict[str, int]:
    """Op counts of the graph ONNX Runtime runs: ``path`` after its own optimisations at load."""
    optimized = work / f"{path.stem}.loaded.onnx"
    session(path, threads, optimized_model_filepath=str(optimized))
    counts = op_counts(onnx.load(str(optimized), load_external_data=False))
    optimized.unlink()
    return counts


def feeds_for(tokenizer: Tokenizer, texts: Sequence[str], inputs: Sequence[str]) -> dict[str, np.ndarray]:
    encodings = tokenizer.encode_batch(list(texts))
    feed = {"input_ids": np.array([e.ids for e in encodings], np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], np.int64)}
    return {name: feed[name] for name in inputs}


def batches(texts: Sequence[str], batch: int) -> list[list[str]]:
    return [list(texts[start:start + batch]) for start in range(0, len(texts), batch)]


def parity_and_accuracy(sessions: dict[str, ort.InferenceSession], tokenizer: Tokenizer, texts: list[str],
                        labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Per graph: max abs logit difference to fp32 at batch 1 and 32 (file order, padded), test accuracy (batch 32)."""
    inputs = [i.name for i in sessions[FP32].get_inputs()]
    out: dict[str, dict[str, float]] = {name: {} for name in sessions}
    for batch in BATCHES:
        logits: dict[str, list[np.ndarray]] = {name: [] for name in sessions}
        for chunk in tqdm(batches(texts, batch), desc=f"parity b={batch}", unit="call", leave=False):
            feed = feeds_for(tokenizer, chunk, inputs)
            for name, sess in sessions.items():
                logits[name].append(sess.run(["logits"], feed)[0])
        joined = {name: np.concatenate(values) for name, values in logits.items()}
        for name, values in joined.items():
            out[name][f"max_abs_diff_batch_{batch}"] = float(np.abs(values - joined[FP32]).max())
            if batch == BATCHES[-1]:
                out[name]["test_accuracy"] = float((values.argmax(-1) == labels).mean())
                out[name]["fp32_agreement"] = float((values.argmax(-1) == joined[FP32].argmax(-1)).mean())
    return out


def latency(sessions: dict[str, ort.InferenceSession], tokenizer: Tokenizer, texts: list[str], warmup: int,
            runs: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per graph and batch: median, p90 and mean ms over ``runs`` calls on consecutive real sentences, the graphs'
    runs interleaved with their order rotating from one call to the next."""
    inputs = [i.name for i in sessions[FP32].get_inputs()]
    names = list(sessions)
    out: dict[str, dict[str, dict[str, float]]] = {name: {} for name in names}
    for batch in BATCHES:
        chunks = batches(texts, batch)
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in tqdm(range(warmup + runs), desc=f"latency b={batch}", unit="run", leave=False):
            feed = feeds_for(tokenizer, chunks[i % len(chunks)], inputs)
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                sessions[name].run(["logits"], feed)
                if i >= warmup:
                    times[name].append((time.perf_counter() - start) * 1000)
        for name, values in times.items():
            out[name][f"batch_{batch}"] = {"median_ms": statistics.median(values),
                                           "p90_ms": float(np.percentile(values, 90)),
                                           "mean_ms": statistics.fmean(values)}
    return out


def profile(path: Path, work: Path, tokenizer: Tokenizer, texts: list[str], threads: int) -> dict[str, Any]:
    """Kernel time share per op type (the eight largest) at batch 1 and 32, ``PROFILE_RUNS`` calls each."""
    out = {}
    for batch in BATCHES:
        sess = session(path, threads, enable_profiling=True, profile_file_prefix=str(work / f"{path.stem}-profile"))
        inputs = [i.name for i in sess.get_inputs()]
        for chunk in batches(texts, batch)[:PROFILE_RUNS]:
            sess.run(["logits"], feeds_for(tokenizer, chunk, inputs))
        trace = Path(sess.end_profiling())
        shares = kernel_time_shares(json.loads(trace.read_text()))
        out[f"batch_{batch}"] = {op: round(share, 4) for op, share in list(shares.items())[:8]}
        trace.unlink()
    return out


def measure_artifact(artifact: Artifact, work: Path, texts: list[str], labels: np.ndarray,
                     args: argparse.Namespace) -> dict[str, Any]:
    folder = artifact.path
    config = json.loads((folder / "hf" / "config.json").read_text())
    source = folder / artifact.onnx["model"]
    graphs = {FP32: source}
    result: dict[str, Any] = {"graphs": {FP32: {"applied": {}}}}
    for route in args.routes:
        target = work / f"{artifact.name}.{route}.onnx"
        start = time.perf_counter()
        applied = ROUTES[route](source, target, config)
        graphs[route] = target
        result["graphs"][route] = {"applied": applied, "build_s": time.perf_counter() - start}
    for name, path in graphs.items():
        model = onnx.load(str(path), load_external_data=False)
        result["graphs"][name] |= {"ops": op_counts(model), "nodes": len(model.graph.node),
                                   "fused_ops": fused_op_counts(model),
                                   "loaded_ops": loaded_graph_counts(path, work, args.threads)}
        result["graphs"][name]["loaded_nodes"] = sum(result["graphs"][name]["loaded_ops"].values())
    tokenizer = serving_tokenizer(folder / "hf", artifact.max_length)
    sessions = {name: session(path, args.threads) for name, path in graphs.items()}
    quality = parity_and_accuracy(sessions, tokenizer, texts, labels)
    timing = latency(sessions, tokenizer, texts, args.warmup, args.runs)
    del sessions
    for name, path in graphs.items():
        entry = result["graphs"][name] | quality[name] | {"latency": timing[name]}
        entry["profile"] = profile(path, work, tokenizer, texts, args.threads)
        entry["parity_ok"] = max(quality[name][f"max_abs_diff_batch_{b}"] for b in BATCHES) <= PARITY_LIMIT
        entry["speedup"] = {f"batch_{b}": timing[FP32][f"batch_{b}"]["median_ms"] /
                            timing[name][f"batch_{b}"]["median_ms"] for b in BATCHES}
        entry["faster_at_parity"] = entry["parity_ok"] and all(v > 1.0 for v in entry["speedup"].values())
        result["graphs"][name] = entry
    return result


def markdown(result: dict[str, Any]) -> str:
    rows = ["| model | graph | fused ops | nodes: file / run by ORT | max diff b=1 / b=32 | test acc. | "
            "b=1 ms | b=32 ms | speed-up b=1 / b=32 |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for model, m in result["models"].items():
        for name, g in m["graphs"].items():
            fused = ", ".join(f"{op} {n}" for op, n in g["fused_ops"].items()) or "-"
            lat = g["latency"]
            rows.append(f"| {model} | {name} | {fused} | {g['nodes']} / {g['loaded_nodes']} | "
                        f"{g['max_abs_diff_batch_1']:.1e} / {g['max_abs_diff_batch_32']:.1e} | "
                        f"{g['test_accuracy']:.4f} | {lat['batch_1']['median_ms']:.2f} | "
                        f"{lat['batch_32']['median_ms']:.1f} | {g['speedup']['batch_1']:.2f}x / "
                        f"{g['speedup']['batch_32']:.2f}x |")
    return "\n".join(rows) + (
        f"\n\nONNX Runtime {result['onnxruntime']} CPU, {result['threads']} intra-op thread(s), the server's "
        f"SessionOptions; median of {result['runs']} interleaved runs after {result['warmup']} warm-up runs; "
        f"parity over the {result['sentences']} test sentences (limit {PARITY_LIMIT:g}).\n")


def plot(result: dict[str, Any], out: Path) -> None:
    rows = [{"model": model, "graph": name, "b1": g["latency"]["batch_1"]["median_ms"],
             "b32": g["latency"]["batch_32"]["median_ms"], "nodes": g["loaded_nodes"],
             "accuracy": g["test_accuracy"]}
            for model, m in result["models"].items() for name, g in m["graphs"].items()]
    panels = [("b1", "latency b=1 (ms)", False), ("b32", "latency b=32 (ms)", False),
              ("nodes", "nodes run by ORT", False), ("accuracy", "test accuracy", False)]
    grouped_bars(rows, panels, group="model", series="graph",
                 title=f"ONNX Runtime fusion, CPU, {result['threads']} thread(s)", out=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_ROOT / "sst2")
    parser.add_argument("--test-file", default="test.tsv")
    parser.add_argument("--models", nargs="+", default=None,
                        help="only these artifacts of --models-dir (default: every text-classification artifact)")
    parser.add_argument("--routes", nargs="+", choices=list(ROUTES), default=list(ROUTES))
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, the same for every graph")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--work", type=Path, default=None, help="folder for the fused graphs (default: temporary)")
    parser.add_argument("--out", type=Path, default=RESULTS / "onnx_fusion.json")
    args = parser.parse_args()

    schema = load_schema()
    artifacts = [open_artifact(folder, schema) for folder in discover(args.models_dir)
                 if canonical_task(read_manifest(folder, schema)[0]["task"]) == TEXT_CLASSIFICATION
                 and (args.models is None or folder.name in args.models)]
    if not artifacts:
        raise SystemExit(f"no text-classification artifact in {args.models_dir}")
    result: dict[str, Any] = {"threads": args.threads, "warmup": args.warmup, "runs": args.runs,
                              "data": str(args.data_dir / args.test_file), "onnxruntime": ort.__version__,
                              "parity_limit": PARITY_LIMIT, "models": {}}
    with tempfile.TemporaryDirectory(prefix="onnx-fusion-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for artifact in artifacts:
            examples = read_examples(args.data_dir / args.test_file, "sentence", "label", artifact.labels)
            result["sentences"] = len(examples)
            result["models"][artifact.name] = measure_artifact(
                artifact, work, [e.text for e in examples], np.array([e.label for e in examples]), args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(markdown(result))


if __name__ == "__main__":
    main()
