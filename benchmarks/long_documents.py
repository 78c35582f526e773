"""Long documents: accuracy and time per document of each long-text strategy (truncate, head+tail, chunks) for every
text-classification artifact in the models dir, with the plain test sentences as the reference.

    python benchmarks/long_documents.py --limit 100      # 100 documents (default 300)

Documents are built from SST-2's labelled test sentences (``--data``, tab-separated ``sentence``/``label``): each
takes one label and joins sentences of that label, drawn in a seeded order, until it reaches a length drawn
between ``--min-words`` and ``--max-words`` (no sentence twice in a document; a sentence that would pass the
maximum is skipped). Its label is the sentences' label. Nothing is copied into the repository.

The server's own task code runs in-process, no HTTP: the registry's classifier (`app.tasks`) on the chosen runtime
reads each document as `Classifier.classify` does (the windows `split` makes, one `predict` call with all of one
document's windows, `join`); the server only adds the batcher, which shares those calls among requests. Each
document is read by every strategy in turn, the order rotating from one document to the next, so that background
load hits them alike; the time per document is the median of those reads. The reference is the accuracy on the
plain test sentences, all of them (they fit the window, so every strategy reads them alike), 32 per call.

Writes benchmarks/results/long_documents.json and long_documents.png, and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tqdm import tqdm

from app.runtimes import create_runtime
from app.settings import LongTextStrategy
from app.tasks import TASKS
from app.tasks.classification import Classifier
from app.tasks.classification.long_text import STRATEGIES
from contract import TEXT_CLASSIFICATION, Artifact, canonical_task, discover, load_schema, open_artifact, read_manifest
from training.classification.data import read_examples
from training.config import DEFAULT_DATA_ROOT

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE_BATCH = 32
COLOURS = {"reference": "#8c8c8c", "truncate": "#4c72b0", "head+tail": "#dd8452", "chunks": "#55a868"}


def build_documents(sentences: list[tuple[str, int]], count: int, min_words: int, max_words: int,
                    seed: int) -> list[tuple[str, int]]:
    """``count`` documents (text, label), alternating labels, each of same-label sentences joined to a length
    drawn in [min_words, max_words] words."""
    rng = random.Random(seed)
    by_label: dict[int, list[str]] = {}
    for text, label in sentences:
        by_label.setdefault(label, []).append(text)
    labels = sorted(by_label)
    documents = []
    for index in range(count):
        label = labels[index % len(labels)]
        target = rng.randint(min_words, max_words)
        pool = rng.sample(by_label[label], len(by_label[label]))
        parts: list[str] = []
        words = 0
        for sentence in pool:
            size = len(sentence.split())
            if words + size > max_words:
                continue
            parts.append(sentence)
            words += size
            if words >= target:
                break
        if words < min_words:
            raise ValueError(f"label {label} has too few sentences for a document of {min_words} words")
        documents.append((" ".join(parts), label))
    return documents


def load(artifact: Artifact, runtime: str, threads: int) -> Classifier:
    model = TASKS[artifact.task].create(artifact, create_runtime(runtime, "cpu", threads))
    assert isinstance(model, Classifier)
    model.load()
    model.warmup()
    return model


def reference(model: Classifier, sentences: list[tuple[str, int]]) -> float:
    """Accuracy on the plain sentences, ``REFERENCE_BATCH`` per call."""
    labels = model.artifact.labels
    right = 0
    for start in range(0, len(sentences), REFERENCE_BATCH):
        batch = sentences[start:start + REFERENCE_BATCH]
        predictions = model.classify([text for text, _ in batch], "truncate")
        right += sum(p.label == labels[label] for p, (_, label) in zip(predictions, batch, strict=True))
    return right / len(sentences)


def read_documents(model: Classifier, documents: list[tuple[str, int]]) -> dict[str, dict[str, float]]:
    """Per strategy: accuracy, median and mean ms per document, mean windows per document."""
    labels = model.artifact.labels
    right = {s: 0 for s in STRATEGIES}
    times: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    windows: dict[str, list[int]] = {s: [] for s in STRATEGIES}
    for index, (text, label) in enumerate(tqdm(documents, desc=model.artifact.name, unit="doc")):
        shift = index % len(STRATEGIES)
        order: list[LongTextStrategy] = [*STRATEGIES[shift:], *STRATEGIES[:shift]]
        for strategy in order:
            start = time.perf_counter()
            (prediction,) = model.classify([text], strategy)
            times[strategy].append((time.perf_counter() - start) * 1000)
            right[strategy] += prediction.label == labels[label]
            windows[strategy].append(prediction.chunks)
    return {s: {"accuracy": right[s] / len(documents), "median_ms": statistics.median(times[s]),
                "mean_ms": statistics.fmean(times[s]), "mean_windows": statistics.fmean(windows[s])}
            for s in STRATEGIES}


def markdown(result: dict[str, Any]) -> str:
    head = "| model | tokens / window | sentences (reference) | " + " | ".join(STRATEGIES) + " | best |"
    rows = [head, "|---|---:|---:|" + "---:|" * len(STRATEGIES) + "---|"]
    for name, m in result["models"].items():
        cells = [f"{m['strategies'][s]['accuracy']:.3f} ({m['strategies'][s]['median_ms']:.0f} ms, "
                 f"{m['strategies'][s]['mean_windows']:.1f} w)" for s in STRATEGIES]
        rows.append(f"| {name} | {m['mean_tokens']:.0f} / {m['max_length']} | {m['reference_accuracy']:.3f} | "
                    + " | ".join(cells) + f" | {m['best']} |")
    d = result["documents"]
    return "\n".join(rows) + (
        f"\n\nAccuracy on {d['count']} documents of {d['min_words']}-{d['max_words']} words (mean"
        f" {d['mean_words']:.0f}), median ms per document and mean windows read (w); reference: accuracy on"
        f" {result['reference_sentences']} plain test sentences. {result['runtime']} runtime,"
        f" {result['threads']} thread(s).\n")


def plot(result: dict[str, Any], out: Path) -> None:
    models = list(result["models"])
    series = ["reference", *STRATEGIES]
    fig, (acc, ms) = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(series)
    for k, name in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(models))]
        values = [result["models"][m]["reference_accuracy"] if name == "reference"
                  else result["models"][m]["strategies"][name]["accuracy"] for m in models]
        acc.bar_label(acc.bar(xs, values, width, label=name, color=COLOURS[name]), fmt="%.3f", fontsize=7)
        if name != "reference":
            times = [result["models"][m]["strategies"][name]["median_ms"] for m in models]
            ms.bar_label(ms.bar(xs, times, width, label=name, color=COLOURS[name]), fmt="%.0f", fontsize=7)
    for ax, title in ((acc, "accuracy"), (ms, "median ms per document")):
        ax.set_xticks(range(len(models)), models)
        ax.set_title(title)
        ax.legend(fontsize=8)
    acc.set_ylim(0.5, 1.05)
    d = result["documents"]
    fig.suptitle(f"{d['count']} SST-2 test documents of {d['min_words']}-{d['max_words']} words "
                 f"({result['runtime']}, {result['threads']} thread(s))")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT / "sst2" / "test.tsv")
    parser.add_argument("--limit", type=int, default=300, help="documents to build and read (fewer: a quicker run)")
    parser.add_argument("--min-words", type=int, default=200)
    parser.add_argument("--max-words", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runtime", choices=["onnx", "torch"], default="onnx")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    schema = load_schema()
    artifacts = [open_artifact(folder, schema) for folder in discover(args.models_dir)
                 if canonical_task(read_manifest(folder, schema)[0]["task"]) == TEXT_CLASSIFICATION]
    if not artifacts:
        raise SystemExit(f"no text-classification artifact in {args.models_dir}")
    labels = artifacts[0].labels
    sentences = [(ex.text, ex.label) for ex in read_examples(args.data, "sentence", "label", labels)]
    documents = build_documents(sentences, args.limit, args.min_words, args.max_words, args.seed)
    words = [len(text.split()) for text, _ in documents]
    result: dict[str, Any] = {
        "data": str(args.data), "runtime": args.runtime, "threads": args.threads, "seed": args.seed,
        "reference_sentences": len(sentences),
        "documents": {"count": len(documents), "min_words": args.min_words, "max_words": args.max_words,
                      "mean_words": statistics.fmean(words), "words_range": [min(words), max(words)]},
        "models": {}}
    for artifact in artifacts:
        if artifact.labels != labels:
            raise SystemExit(f"{artifact.name}: labels {artifact.labels} differ from {labels}")
        model = load(artifact, args.runtime, args.threads)
        tokens = [s.tokens for s in model.split([text for text, _ in documents], "truncate")]
        strategies = read_documents(model, documents)
        result["models"][artifact.name] = {
            "reference_accuracy": reference(model, sentences), "strategies": strategies,
            "mean_tokens": statistics.fmean(tokens), "max_length": artifact.max_length,
            "best": max(STRATEGIES, key=lambda s: strategies[s]["accuracy"])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "long_documents.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "long_documents.png")
    print(markdown(result))


if __name__ == "__main__":
    main()
