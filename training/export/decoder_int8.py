"""The int8 variant of a KV-cache ONNX decoder (model.int8.onnx), measured on a text against the fp32 graph.

Weight-only quantisation (ONNX Runtime's `MatMulNBitsQuantizer`): every MatMul weight stored as 8-bit integers in
blocks of 32 along the input dimension, with a scale and a zero point per block (asymmetric, the layout of a
GGUF's Q4_1/Q8_1), activations quantised to int8 inside the kernel (accuracy level 4, as llama.cpp does for its
dot products). The quantiser sees the graph after ONNX Runtime's basic optimisations, which fold the transpose of
a tied embedding into a constant so that the output projection is quantised too. Chosen by measurement on
SmolLM2-135M (`benchmarks/decoder_quantization.py`): 2.3x the fp32 decode rate at the same perplexity, where
per-channel dynamic int8 lost 70 points of perplexity and 4-bit weights 27.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
from onnxruntime.quantization.shape_inference import quant_pre_process
from tokenizers import Tokenizer

from training.export.int8 import INT8

log = logging.getLogger(__name__)

BITS, BLOCK_SIZE, ACCURACY_LEVEL = 8, 32, 4
WINDOW = 256
"""Tokens per graph call when measuring (the perplexity of benchmarks/decoder_quantization.py)."""
SETTINGS = {"method": "MatMulNBits", "bits": BITS, "block_size": BLOCK_SIZE, "symmetric": False,
            "accuracy_level": ACCURACY_LEVEL}


def quantize_decoder(source: Path, target: Path) -> None:
    """Write the weight-only int8 copy of the decoder graph ``source`` to ``target``."""
    with tempfile.TemporaryDirectory(prefix="decoder-int8-") as work:
        folded = Path(work) / "folded.onnx"
        quant_pre_process(source, folded, skip_symbolic_shape=True)
        quantizer = MatMulNBitsQuantizer(onnx.load(folded), bits=BITS, block_size=BLOCK_SIZE, is_symmetric=False,
                                         accuracy_level=ACCURACY_LEVEL)
        quantizer.process()
        onnx.save(quantizer.model.model, target)


def window_logits(session: ort.InferenceSession, ids: list[int], window: int) -> np.ndarray:
    """Next-token logits ``[len(ids) - 1, vocab]`` for every position but the last, ``ids`` read in consecutive
    windows of ``window`` tokens, each one call from an empty past (one masked dummy position, as the contract
    says)."""
    inputs = session.get_inputs()
    past = [(i.name, (1, i.shape[1], 1, i.shape[3])) for i in inputs[3:]]
    rows = []
    for start in range(0, len(ids) - 1, window):
        chunk = np.asarray([ids[start:start + window + 1]], dtype=np.int64)  # one more: its last is only a target
        width = chunk.shape[1] - 1
        feed: dict[str, Any] = {"input_ids": chunk[:, :width],
                                "attention_mask": np.pad(np.ones((1, width), np.int64), ((0, 0), (1, 0))),
                                "position_ids": np.arange(width, dtype=np.int64)[None],
                                **{name: np.zeros(shape, np.float32) for name, shape in past}}
        rows.append(np.asarray(session.run(["logits"], feed)[0][0], dtype=np.float64))
    return np.concatenate(rows)


def perplexity(logits: np.ndarray, targets: np.ndarray) -> float:
    """exp(mean negative log-likelihood of ``targets`` under ``logits``)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(np.exp(-log_probs[np.arange(len(targets)), targets].mean()))


def decoder_int8_variant(root: Path, text: str, context_length: int, tokens: int = 512,
                         threads: int | None = None) -> dict[str, Any]:
    """Write root/model.int8.onnx from root/model.onnx; return its manifest entry (``onnx.variants.int8``) with
    the perplexity of both graphs on the first ``tokens`` tokens of ``text`` (windows of up to 256 tokens within
    the context) and how often their next-token choices agree there (teacher-forced: the same context for both,
    so one difference does not lead to more)."""
    window = min(WINDOW, context_length - 1)
    quantize_decoder(root / "model.onnx", root / INT8)
    ids = Tokenizer.from_file(str(root / "hf" / "tokenizer.json")).encode(text).ids[:tokens]
    if len(ids) < 2:
        raise ValueError(f"the evaluation text has {len(ids)} token(s); at least 2 are needed")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    fp32, int8 = (window_logits(ort.InferenceSession(str(root / graph), options, providers=["CPUExecutionProvider"]),
                                ids, window) for graph in ("model.onnx", INT8))
    targets = np.asarray(ids[1:])
    metrics = {"perplexity": perplexity(int8, targets), "fp32_perplexity": perplexity(fp32, targets),
               "fp32_next_token_agreement": float((int8.argmax(-1) == fp32.argmax(-1)).mean()),
               "split_sizes": {"evaluated_tokens": len(targets)}}
    log.info("int8 decoder: perplexity %.2f (fp32 graph %.2f) over %d tokens, same next token as fp32 at %.1f%%",
             metrics["perplexity"], metrics["fp32_perplexity"], len(targets),
             100 * metrics["fp32_next_token_agreement"])
    return {"model": INT8, "quantization": {**SETTINGS, "onnxruntime": ort.__version__}, "metrics": metrics}
