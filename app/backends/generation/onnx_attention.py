"""The ONNX Runtime attention forward of a generator: a session on the artifact's ``model.attn.onnx``.

The graph (schema 1.2, see models/README.md) takes ``input_ids``, ``attention_mask`` ``[batch, seq]`` and
returns ``logits`` (next-token logits after the last attended position, ``[batch, vocab]``) and
``attentions`` ``[layers, batch, heads, seq, seq]``."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.artifacts import Artifact
from app.backends.base import AttentionUnavailable
from app.backends.onnx_backend import session_options

INPUTS = {"input_ids", "attention_mask"}
OUTPUTS = ["logits", "attentions"]


class OnnxAttention:
    """``input_ids [1, seq]`` -> next-token logits ``[vocab]``, attentions ``[layers, heads, seq, seq]``."""

    def __init__(self, artifact: Artifact, threads: int, providers: list[str]) -> None:
        spec = artifact.manifest.get("onnx") or {}
        if "attention" not in spec or not set(OUTPUTS) <= set(spec.get("attention_outputs", [])):
            raise AttentionUnavailable(
                f"model {artifact.name!r} has no ONNX attention graph (model.attn.onnx, exported with schema 1.2 "
                f"and later): re-export it, or serve it with APP_BACKEND=torch")
        self.session = ort.InferenceSession(str(artifact.path / str(spec["attention"])),
                                            sess_options=session_options(threads), providers=providers)
        inputs = {i.name for i in self.session.get_inputs()}
        if inputs != INPUTS:
            raise ValueError(f"model.attn.onnx inputs {sorted(inputs)} differ from the contract's {sorted(INPUTS)}")

    def __call__(self, input_ids: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        feed = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}
        logits, attentions = self.session.run(OUTPUTS, feed)
        return np.asarray(logits[0], dtype=np.float32), np.asarray(attentions[:, 0], dtype=np.float32)
