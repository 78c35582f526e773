"""Weight-quantised copies of a KV-cache ONNX decoder: single-stream decode speed, greedy agreement with fp32,
perplexity, and where a decode step spends its time (ONNX Runtime's per-node profile).

    python benchmarks/decoder_quantization.py --artifact models/smollm2-135m-instruct --work-dir /tmp/decoder-quant

The variants are written to --work-dir, never into the artifact: fp32 (the artifact's model.onnx as it is);
`int8-dynamic`, ONNX Runtime's `quantize_dynamic` of the MatMul weights (int8 per output channel, activations
quantised at run time); `nbits8` and `nbits4`, `MatMulNBitsQuantizer` (weight-only, blocks of 32 along the input
dimension, asymmetric: a scale and a zero point per block, the layout of the GGUF's Q4_1) with accuracy level 4
(activations quantised to int8 inside the kernel, as llama.cpp does for its Q4_1 dot products); `nbits4-fp32`
the same 4-bit weights computed in fp32. `nbits8` is the graph `import_gguf` and `training quantize` now write into
the artifact as its int8 variant (model.int8.onnx, `training/export/decoder_int8.py`). The decode loop is the
server's (the app's `OnnxGenerator` on the app's session options, its session swapped for each variant's), in this
process, one prompt at a time, greedy.
Per variant: file size, time to first token and decode tokens/s (medians over the prompts), the greedy
continuations' agreement with fp32 (`report.greedy_agreement`), perplexity on --ppl-tokens tokens of the corpus
(windows of --ppl-window, measured as the artifact's int8 metrics are: `training/export/decoder_int8.py`), and the
share of decode time per operator type. Writes benchmarks/results/decoder_quantization.{json,png} and prints a
table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
from onnxruntime.quantization.shape_inference import quant_pre_process
from report import greedy_agreement, grouped_bars

from app.runtimes import create_runtime
from app.runtimes.onnx import session_options
from app.tasks import TASKS
from app.tasks.generation.generator import GenerationParams
from app.tasks.generation.onnx import OnnxGenerator
from app.tasks.generation.sampling import SamplingParams
from contract import load_schema, open_artifact
from training.classification.data import read_examples
from training.config import DEFAULT_DATA_ROOT
from training.export.decoder_int8 import perplexity, window_logits

RESULTS = Path(__file__).resolve().parent / "results"
NBITS = {"nbits8": (8, 4), "nbits4": (4, 4), "nbits4-fp32": (4, 0)}
"""variant -> (bits, accuracy level)"""


def quantise(source: Path, variant: str, work_dir: Path) -> Path:
    """``variant`` of the decoder at ``source``, written to ``work_dir`` (kept when it exists). The quantisers
    see the graph after ONNX Runtime's basic optimisations (`quant_pre_process`), which fold the transpose of
    the tied embedding into a constant so that the output projection is a MatMul on a weight they can quantise."""
    out, folded = work_dir / f"model.{variant}.onnx", work_dir / "model.folded.onnx"
    if variant == "fp32" or out.exists():
        return source if variant == "fp32" else out
    if not folded.exists():
        quant_pre_process(source, folded, skip_symbolic_shape=True)
    if variant == "int8-dynamic":
        quantize_dynamic(folded, out, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True)
        return out
    bits, level = NBITS[variant]
    quantizer = MatMulNBitsQuantizer(onnx.load(folded), bits=bits, block_size=32, is_symmetric=False,
                                     accuracy_level=level)
    quantizer.process()
    onnx.save(quantizer.model.model, out)
    return out


def decode_runs(generator: OnnxGenerator, prompts: list[list[int]], new_tokens: int) -> dict[str, Any]:
    """Greedy continuations of each prompt alone: tokens, and medians of TTFT and decode tokens/s."""
    params = GenerationParams(max_new_tokens=new_tokens, sampling=SamplingParams(temperature=0))
    continuations, ttfts, rates = [], [], []
    for ids in prompts:
        started, times, tokens = time.perf_counter(), [], []
        for token in generator.tokens(ids, params):
            times.append(time.perf_counter() - started)
            tokens.append(token)
        continuations.append(tokens)
        ttfts.append(times[0])
        if len(times) > 1:
            rates.append((len(times) - 1) / (times[-1] - times[0]))
    return {"continuations": continuations, "ttft_ms": 1000 * statistics.median(ttfts),
            "decode_tokens_per_s": statistics.median(rates) if rates else 0.0}


def decode_profile(generator: OnnxGenerator, path: Path, prompt: list[int], steps: int, threads: int,
                   prefix: Path) -> dict[str, float]:
    """Share of decode time per operator type (the prefill call left out), from ONNX Runtime's profiler."""
    import onnxruntime as ort

    options = session_options(threads)
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    served = generator.session
    generator.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    list(generator.tokens(prompt, GenerationParams(max_new_tokens=steps, sampling=SamplingParams(temperature=0))))
    events = json.loads(Path(generator.session.end_profiling()).read_text())
    generator.session = served
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    decode_from = runs[0]["ts"] + runs[0]["dur"]
    total = sum(e["dur"] for e in runs[1:])
    by_op = Counter[str]()
    for event in events:
        if event.get("cat") == "Node" and event["ts"] >= decode_from and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    return {"decode_step_ms": total / 1000 / max(1, len(runs) - 1),
            **{op: dur / total for op, dur in by_op.most_common(6)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, default=Path("models/smollm2-135m-instruct"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/decoder-quant"))
    parser.add_argument("--variants", nargs="+", default=["fp32", "int8-dynamic", *NBITS])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--prompts", type=int, default=16, help="the first N SST-2 test sentences")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--ppl-text", type=Path, default=None,
                        help="default: corpus/moby-dick/chapter_1.txt under --data")
    parser.add_argument("--ppl-tokens", type=int, default=512, help="its first N tokens")
    parser.add_argument("--ppl-window", type=int, default=256)
    parser.add_argument("--profile-steps", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    artifact = open_artifact(args.artifact, load_schema())
    generator = TASKS[artifact.task].create(artifact, create_runtime("onnx", "cpu", args.threads))
    assert isinstance(generator, OnnxGenerator)
    generator.load()
    texts = [ex.text for ex in read_examples(args.data / "sst2" / "test.tsv", "sentence", "label",
                                             ["negative", "positive"])][:args.prompts]
    prompts = [generator.encode(text) for text in texts]
    ppl_text = args.ppl_text or args.data / "corpus" / "moby-dick" / "chapter_1.txt"
    ppl_ids = generator.encode(ppl_text.read_text())[:args.ppl_tokens]
    ppl_targets = np.asarray(ppl_ids[1:])
    rows: list[dict[str, Any]] = []
    reference: list[list[int]] = []
    for variant in args.variants:
        print(f"==> {variant}", flush=True)
        began = time.perf_counter()
        path = quantise(artifact.onnx_model, variant, args.work_dir)
        quantise_s = time.perf_counter() - began
        generator.session = generator.runtime.session(path)
        generator.warmup()
        runs = decode_runs(generator, prompts, args.new_tokens)
        reference = reference or runs["continuations"]
        rows.append({"variant": variant, "file_mib": path.stat().st_size / 2**20, "quantise_s": quantise_s,
                     "ttft_ms": runs["ttft_ms"], "decode_tokens_per_s": runs["decode_tokens_per_s"],
                     "agreement_with_fp32": greedy_agreement(reference, runs["continuations"]),
                     "perplexity": perplexity(window_logits(generator.session, ppl_ids, args.ppl_window), ppl_targets),
                     "profile": decode_profile(generator, path, prompts[0], args.profile_steps, args.threads,
                                               args.work_dir / f"profile.{variant}")})
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"setup": {k: str(v) for k, v in vars(args).items()}, "ppl_tokens": len(ppl_ids), "rows": rows}
    (RESULTS / "decoder_quantization.json").write_text(json.dumps(result, indent=2) + "\n")
    grouped_bars([r | {"model": artifact.name} for r in rows],
                 [("decode_tokens_per_s", "decode tokens/s, one stream", False), ("perplexity", "perplexity", False)],
                 "model", "variant", "quantised ONNX decoder vs fp32", RESULTS / "decoder_quantization.png")
    print("| variant | file MiB | TTFT ms | decode tok/s | tokens identical to fp32 | continuations identical | "
          f"perplexity ({len(ppl_ids)} tokens) | decode step ms | top operators |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        agree, profile = r["agreement_with_fp32"], dict(r["profile"])
        step = profile.pop("decode_step_ms")
        ops = ", ".join(f"{op} {share:.0%}" for op, share in list(profile.items())[:3])
        print(f"| {r['variant']} | {r['file_mib']:.0f} | {r['ttft_ms']:.0f} | {r['decode_tokens_per_s']:.1f} | "
              f"{agree['tokens_identical']:.3f} | {agree['continuations_identical']}/{agree['continuations']} | "
              f"{r['perplexity']:.2f} | {step:.1f} | {ops} |")


if __name__ == "__main__":
    main()
