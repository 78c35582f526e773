"""The torch runtime's options on a CPU, in-process: fp32 vs bf16 vs torch.compile, for the classifier and the decoder.

    python benchmarks/torch_cpu.py --parts classifier decoder --compile

Classifier (default models/sentiment-minilm): ms per call at batch 1, 8 and 32 of SST-2 test sentences (padded to
the longest of each batch, as the server's batcher does), 1 thread (the server's default per inference on 2 CPUs),
for fp32, bf16 weights, fp32 under bf16 autocast, and with --compile torch.compile (inductor, dynamic=True) of fp32
and bf16 (compile time and graphs compiled are reported); the variants interleave in every repeat, medians of the
repeats. Then test accuracy of fp32 and bf16 over the 872 labelled sentences and their agreement.
Decoder (default models/smollm2-135m-instruct): ms per decode step at batch 1 and 8 after a 16-token prompt,
2 threads, DynamicCache (what the server uses, also run on a second thread as its scheduler does) vs StaticCache,
fp32 vs bf16, and with --compile a compiled decode step over the StaticCache at the largest batch; then greedy
continuations (32 tokens) of 16 prompts in fp32 and bf16 and their agreement.
Writes benchmarks/results/torch_cpu.{json,png} and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from report import grouped_bars
from servers import REPO, machine_info
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DynamicCache,
    StaticCache,
)

from training.classification.data import read_examples
from training.config import DEFAULT_DATA_ROOT

RESULTS = REPO / "benchmarks" / "results"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def sst2(data: Path) -> tuple[list[str], list[int]]:
    examples = read_examples(data / "sst2" / "test.tsv", "sentence", "label", ["negative", "positive"])
    return [ex.text for ex in examples], [int(ex.label) for ex in examples]


def timed(call: Callable[[], Any], repeat: int) -> float:
    """Milliseconds per call, ``repeat`` calls after one unmeasured call."""
    call()
    began = time.perf_counter()
    for _ in range(repeat):
        call()
    return 1000 * (time.perf_counter() - began) / repeat


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def classifier(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    torch.set_num_threads(args.classifier_threads)
    path = args.models_dir / args.classifier / "hf"
    tokenizer = AutoTokenizer.from_pretrained(path)
    models = {name: AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype).eval()
              for name, dtype in DTYPES.items()}
    texts, labels = sst2(args.data)

    def forward(model: Any, autocast: bool = False) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        def call(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                return model(**batch).logits  # type: ignore[no-any-return]
        return call

    variants = {"fp32": forward(models["fp32"]), "bf16": forward(models["bf16"]),
                "fp32 + bf16 autocast": forward(models["fp32"], autocast=True)}
    compiled: dict[str, Any] = {}
    if args.compile:
        for name in DTYPES:
            graphs, began = graphs_compiled(), time.perf_counter()
            call = forward(torch.compile(models[name], dynamic=True))
            for size in args.batch_sizes:  # every batch size once: the compile cost a server pays at warm-up
                call(dict(tokenizer(texts[:size], padding=True, return_tensors="pt")))
            compiled[f"{name} compiled"] = {"compile_s": time.perf_counter() - began,
                                            "graphs": graphs_compiled() - graphs}
            variants[f"{name} compiled"] = call
    rows = []
    for size in args.batch_sizes:
        batches = [dict(tokenizer(texts[i:i + size], padding=True, return_tensors="pt"))
                   for i in range(0, size * args.batches, size)]
        times: dict[str, list[float]] = {name: [] for name in variants}
        graphs = graphs_compiled()
        for _ in range(args.repeats):
            for name, call in variants.items():
                times[name].append(timed(lambda call=call, batches=batches: [call(b) for b in batches], 1)
                                   / len(batches))
        for name, values in times.items():
            rows.append({"part": "classifier", "variant": name, "batch": size, "ms": statistics.median(values),
                         "ms_range": [min(values), max(values)], "texts_per_s": 1000 * size / statistics.median(values),
                         "recompiled_graphs": graphs_compiled() - graphs if "compiled" in name else None})
    predictions = {}
    for name in DTYPES:
        call = variants[name]
        predictions[name] = [int(p) for i in range(0, len(texts), 32)
                             for p in call(dict(tokenizer(texts[i:i + 32], padding=True, return_tensors="pt")))
                             .argmax(-1).tolist()]
    accuracy = {f"{name}_accuracy": sum(p == y for p, y in zip(pred, labels, strict=True)) / len(labels)
                for name, pred in predictions.items()}
    agreement = sum(a == b for a, b in zip(predictions["fp32"], predictions["bf16"], strict=True)) / len(labels)
    return rows, {**accuracy, "bf16_fp32_agreement": agreement, "sentences": len(labels), "compile": compiled}


class Decoder:
    """Prefill ``batch`` copies of prompts cut to ``prompt_tokens``, then one-token decode steps."""

    def __init__(self, model: Any, prompts: torch.Tensor, cache_kind: str, steps: int) -> None:
        self.model, self.prompts, self.cache_kind, self.steps = model, prompts, cache_kind, steps
        self.step_fn: Callable[..., Any] = model

    def prefill(self) -> tuple[Any, torch.Tensor, int]:
        length = self.prompts.shape[1]
        cache = (DynamicCache() if self.cache_kind == "dynamic"
                 else StaticCache(config=self.model.config, max_cache_len=length + self.steps + 1))
        with torch.inference_mode():
            out = self.model(input_ids=self.prompts, cache=cache, use_cache=True, logits_to_keep=1)
        return cache, out.logits[:, -1].argmax(-1, keepdim=True), length

    def step(self, cache: Any, tokens: torch.Tensor, position: int) -> torch.Tensor:
        rows = tokens.shape[0]
        with torch.inference_mode():
            out = self.step_fn(input_ids=tokens, cache=cache, use_cache=True, logits_to_keep=1,
                               position_ids=torch.full((rows, 1), position, dtype=torch.long),
                               cache_position=torch.tensor([position]))
        return out.logits[:, -1].argmax(-1, keepdim=True)  # type: ignore[no-any-return]

    def greedy(self) -> torch.Tensor:
        cache, tokens, position = self.prefill()
        produced = [tokens]
        for offset in range(self.steps - 1):
            tokens = self.step(cache, tokens, position + offset)
            produced.append(tokens)
        return torch.cat(produced, dim=1)

    def ms_per_step(self) -> float:
        cache, tokens, position = self.prefill()
        began = time.perf_counter()
        for offset in range(self.steps):
            tokens = self.step(cache, tokens, position + offset)
        return 1000 * (time.perf_counter() - began) / self.steps


class OnAThread(Decoder):
    """The same steps on a second thread, as the server's scheduler runs them (its own OpenMP team)."""

    def ms_per_step(self) -> float:
        result: list[float] = []
        thread = threading.Thread(target=lambda: result.append(super(OnAThread, self).ms_per_step()))
        thread.start()
        thread.join()
        return result[0]


def agreement(reference: list[list[int]], other: list[list[int]]) -> dict[str, Any]:
    """Tokens identical before each pair's first difference (share of all tokens), continuations identical."""
    shared = [next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
              for a, b in zip(reference, other, strict=True)]
    return {"tokens_identical": sum(shared) / sum(len(a) for a in reference),
            "continuations_identical": sum(a == b for a, b in zip(reference, other, strict=True)),
            "continuations": len(reference)}


def decoder(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    torch.set_num_threads(args.decoder_threads)
    path = args.models_dir / args.decoder / "hf"
    tokenizer = AutoTokenizer.from_pretrained(path)
    models = {name: AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval() for name, dtype in DTYPES.items()}
    texts, _ = sst2(args.data)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    long_enough = [i[:args.prompt_tokens] for i in ids if len(i) >= args.prompt_tokens]
    rows, compiled = [], {}
    for size in args.decode_batches:
        prompts = torch.tensor(long_enough[:size])
        variants = {f"{name} {kind}": Decoder(model, prompts, kind, args.steps)
                    for name, model in models.items() for kind in ("dynamic", "static")}
        variants |= {f"{name} dynamic, second thread": OnAThread(model, prompts, "dynamic", args.steps)
                     for name, model in models.items()}
        if args.compile and size == max(args.decode_batches):  # compiled at the largest batch only (minutes each)
            for name, model in models.items():
                variant = variants[f"{name} static compiled"] = Decoder(model, prompts, "static", args.steps)
                variant.step_fn = torch.compile(model, dynamic=False)
                graphs, began = graphs_compiled(), time.perf_counter()
                variant.ms_per_step()
                compiled[f"{name} static compiled, batch {size}"] = {"compile_s": time.perf_counter() - began,
                                                                     "graphs": graphs_compiled() - graphs}
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, variant in variants.items():
                times[name].append(variant.ms_per_step())
        for name, values in times.items():
            median = statistics.median(values)
            rows.append({"part": "decoder", "variant": name, "batch": size, "ms": median,
                         "ms_range": [min(values), max(values)], "tokens_per_s": 1000 * size / median})
    prompts = torch.tensor(long_enough[:args.agreement_prompts])
    continuations = {name: Decoder(model, prompts, "dynamic", args.agreement_tokens).greedy().tolist()
                     for name, model in models.items()}
    return rows, {"greedy_bf16_vs_fp32": agreement(continuations["fp32"], continuations["bf16"]),
                  "compile": compiled}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| part | variant | batch | ms per call | range | per s |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        rate = r.get("texts_per_s") or r.get("tokens_per_s")
        lines.append(f"| {r['part']} | {r['variant']} | {r['batch']} | {r['ms']:.1f} | "
                     f"{r['ms_range'][0]:.1f}-{r['ms_range'][1]:.1f} | {rate:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT, help="data root holding sst2/test.tsv")
    parser.add_argument("--parts", nargs="+", choices=["classifier", "decoder"], default=["classifier", "decoder"])
    parser.add_argument("--classifier", default="sentiment-minilm")
    parser.add_argument("--decoder", default="smollm2-135m-instruct")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (inductor) variants")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batches", type=int, default=8, help="classifier batches per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--classifier-threads", type=int, default=1)
    parser.add_argument("--decoder-threads", type=int, default=2)
    parser.add_argument("--decode-batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32, help="decode steps per measurement")
    parser.add_argument("--agreement-prompts", type=int, default=16)
    parser.add_argument("--agreement-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    quality: dict[str, Any] = {}
    for part, run in (("classifier", classifier), ("decoder", decoder)):
        if part in args.parts:
            print(f"==> {part}", flush=True)
            part_rows, quality[part] = run(args)
            rows += part_rows
    result = {"setup": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": machine_info(), "torch": torch.__version__, "rows": rows, "quality": quality}
    (args.out / "torch_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    for part in args.parts:
        part_rows = [r | {"rate": r.get("texts_per_s") or r.get("tokens_per_s")} for r in rows if r["part"] == part]
        unit = "texts/s" if part == "classifier" else "tokens/s"
        grouped_bars(part_rows, [("rate", unit, False), ("ms", "ms per call", True)], "batch", "variant",
                     f"torch on CPU: {part}", args.out / f"torch_cpu-{part}.png")
    print("\n" + markdown(rows) + "\n\n" + json.dumps(quality, indent=2))


if __name__ == "__main__":
    main()
