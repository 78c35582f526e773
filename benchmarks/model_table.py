"""Every text-classification model side by side: test accuracy, long-document accuracy per strategy, ONNX Runtime
latency at batch 1 and 32, size, and the training wall time its manifest records.

    python benchmarks/long_documents.py --models-dir runs/table --limit 200 --threads 2
    python benchmarks/model_table.py --models-dir runs/table --threads 2

The long-document accuracies are read from `long_documents.py`'s results (run it first on the same models dir);
the latencies are measured here as `distill_table.py` measures them (same process and SessionOptions, runs of
all models interleaved in rotating order, median). The training time is the manifest's ``metrics.fit_seconds``
(the fit alone: test and export not included), absent in artifacts written before it was recorded.
Writes benchmarks/results/model_table.{json,md,png} and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from distill_table import BATCHES, artifact_facts, measure
from report import write_results

from app.tasks.classification.long_text import STRATEGIES
from contract import TEXT_CLASSIFICATION, canonical_task, discover, read_manifest
from training.classification.data import read_examples
from training.config import DEFAULT_DATA_ROOT

RESULTS = Path(__file__).resolve().parent / "results"


def rows(facts: dict[str, dict[str, Any]], latency: dict[str, dict[str, dict[str, float]]],
         long_documents: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model: its facts, its latencies and its long-document accuracies (None where not measured)."""
    out = []
    for name, fact in facts.items():
        documents = long_documents.get("models", {}).get(fact["name"], {})
        out.append({
            "model": fact["name"], "params": fact["params"], "onnx_bytes": fact["onnx_bytes"],
            "test_accuracy": fact["test_accuracy"],
            "fit_seconds": fact["manifest"]["metrics"].get("fit_seconds"),
            "long_documents": {s: documents["strategies"][s]["accuracy"] if documents else None for s in STRATEGIES},
            **{f"latency_b{b}_ms": latency[name][f"batch_{b}"]["median_ms"] for b in BATCHES}})
    return out


def cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def markdown(result: dict[str, Any]) -> str:
    head = ("| model | params | test.tsv accuracy | " + " | ".join(f"long docs, {s}" for s in STRATEGIES)
            + " | latency b=1 | latency b=32 | training (fit) |")
    lines = [head, "|---|---:|---:|" + "---:|" * len(STRATEGIES) + "---:|---:|---:|"]
    for r in result["rows"]:
        fit = "n/a" if r["fit_seconds"] is None else f"{r['fit_seconds'] / 60:.1f} min"
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.1f} M | {cell(r['test_accuracy'], '.4f')} | "
                     + " | ".join(cell(r["long_documents"][s], ".3f") for s in STRATEGIES)
                     + f" | {r['latency_b1_ms']:.1f} ms | {r['latency_b32_ms']:.0f} ms | {fit} |")
    docs = result["long_documents"]
    return "\n".join(lines) + (
        f"\n\nONNX Runtime CPU (fp32 graphs), {result['threads']} intra-op thread(s), median of {result['runs']} "
        f"interleaved runs of real test sentences. Long documents: {docs.get('count', 'n/a')} documents of "
        f"{docs.get('min_words', '?')}-{docs.get('max_words', '?')} words (`long_documents.py`).\n")


def plot(result: dict[str, Any], out: Path) -> None:
    """Accuracy against latency at batch 1: test sentences (filled) and long documents read in chunks (hollow)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for r in result["rows"]:
        x = r["latency_b1_ms"]
        (point,) = ax.plot([x], [r["test_accuracy"] or 0.0], "o", markersize=8)
        chunks = r["long_documents"]["chunks"]
        if chunks is not None:
            ax.plot([x], [chunks], "o", markersize=8, markerfacecolor="none", color=point.get_color())
        ax.annotate(f"{r['model']} ({r['params'] / 1e6:.0f}M)", (x, r["test_accuracy"] or 0.0),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"latency at batch 1, ms (ONNX Runtime, {result['threads']} threads; log scale)")
    ax.set_ylabel("accuracy")
    ax.set_title("test.tsv sentences (filled) and long documents read in chunks (hollow)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--long-documents", type=Path, default=RESULTS / "long_documents.json",
                        help="long_documents.py's results for the same models")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT / "sst2" / "test.tsv")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    folders = [folder for folder in discover(args.models_dir)
               if canonical_task(read_manifest(folder)[0]["task"]) == TEXT_CLASSIFICATION]
    if not folders:
        raise SystemExit(f"no text-classification artifact in {args.models_dir}")
    facts = {folder.name: artifact_facts(folder) for folder in folders}
    labels = facts[folders[0].name]["manifest"]["labels"]
    texts = [example.text for example in read_examples(args.data, "sentence", "label", labels)]
    latency = measure({folder.name: folder for folder in folders}, facts, texts, args.threads, args.warmup, args.runs)
    long_documents = json.loads(args.long_documents.read_text()) if args.long_documents.is_file() else {}
    result = {"threads": args.threads, "runs": args.runs, "warmup": args.warmup,
              "long_documents": long_documents.get("documents", {}), "rows": rows(facts, latency, long_documents)}
    write_results(args.out, "model_table", result, markdown(result))
    plot(result, args.out / "model_table.png")


if __name__ == "__main__":
    main()
