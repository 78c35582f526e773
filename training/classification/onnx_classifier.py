"""A text classifier's ONNX graph run by ONNX Runtime on the CPU, its texts tokenised as the server tokenises them
(the artifact's hf/tokenizer.json, truncated to ``max_length``, padded per batch): the int8 export's test metrics
and the RLHF reward and judge both read logits through it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer


def serving_tokenizer(hf_dir: Path, max_length: int) -> Tokenizer:
    """The artifact's tokenizer, truncating at ``max_length`` and padding with the model's pad token."""
    tokenizer = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    pad_id = json.loads((hf_dir / "config.json").read_text()).get("pad_token_id")
    pad_id = pad_id if isinstance(pad_id, int) else 0
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id) or "[PAD]")
    return tokenizer


class OnnxClassifier:
    """Logits of ``graph`` for batches of texts (``threads``: intra-op threads, None = ONNX Runtime's choice)."""

    def __init__(self, graph: Path, tokenizer: Tokenizer, threads: int | None = None) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads or 0, 1
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.inputs = [node.name for node in self.session.get_inputs()]
        self.tokenizer = tokenizer

    def logits(self, texts: Sequence[str], batch_size: int) -> npt.NDArray[np.float64]:
        """``[len(texts), labels]`` in text order; batches sorted by length (less padding)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows: list[npt.NDArray[np.float64]] = []
        for start in range(0, len(order), batch_size):
            encodings = self.tokenizer.encode_batch([texts[i] for i in order[start:start + batch_size]])
            feed = {"input_ids": np.array([e.ids for e in encodings], np.int64),
                    "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
                    "token_type_ids": np.array([e.type_ids for e in encodings], np.int64)}
            rows.append(np.asarray(self.session.run(None, {name: feed[name] for name in self.inputs})[0], np.float64))
        if not rows:
            width = self.session.get_outputs()[0].shape[-1]
            return np.zeros((0, width if isinstance(width, int) else 0))
        logits = np.empty((len(texts), rows[0].shape[-1]))
        logits[order] = np.concatenate(rows)
        return logits
