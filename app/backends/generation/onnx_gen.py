"""ONNX Runtime generation: a decoding loop over model.onnx, the KV-cache decoder of the artifact contract.

The graph always takes a past; the first call passes one masked dummy position (see models/README.md).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.backends.generation.attention import AttendingGenerator, AttentionForward
from app.backends.generation.cache import KVCache
from app.backends.generation.onnx_attention import OnnxAttention

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
FIXED_INPUTS = ["input_ids", "attention_mask", "position_ids"]


class OnnxGenerator(AttendingGenerator):
    kind = "onnx"

    def _load_model(self) -> None:
        spec = self.artifact.manifest.get("onnx")
        if not spec:
            raise ValueError("this artifact has no ONNX decoder (exported without --model.onnx); serve it with "
                             "APP_BACKEND=torch")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [CUDA, CPU] if self.device == "cuda" else [CPU]
        self.session = ort.InferenceSession(str(self.artifact.path / spec["model"]), sess_options=options,
                                            providers=providers)
        inputs = self.session.get_inputs()
        names = [i.name for i in inputs]
        if names[:3] != FIXED_INPUTS or len(names) < 5 or names != list(spec["inputs"]):
            raise ValueError(f"model.onnx inputs {names} do not follow the KV-cache decoder contract")
        self.past_names = names[3:]
        heads, head_dim = inputs[3].shape[1], inputs[3].shape[3]
        if not isinstance(heads, int) or not isinstance(head_dim, int):
            raise ValueError(f"model.onnx past inputs need static heads and head_dim, got {inputs[3].shape}")
        self.kv_shape = (heads, head_dim)
        self.providers: list[str] = list(self.session.get_providers())
        log.info("%s: onnx generator, %d cache tensors, providers %s", self.artifact.name, len(self.past_names),
                 self.providers)

    def _run(self, ids: npt.NDArray[np.int64], cache: KVCache) -> npt.NDArray[np.float32]:
        """Append ``ids`` ``[rows, width]`` to ``cache``; logits ``[rows, vocab]`` after the last of them."""
        width = ids.shape[1]
        mask, positions = cache.step_inputs(width)
        feed: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                                **dict(zip(self.past_names, cache.past, strict=True))}
        logits, *present = self.session.run(None, feed)
        cache.advance(present, mask, width)
        result: npt.NDArray[np.float32] = np.asarray(logits[:, -1], dtype=np.float32)
        return result

    def _prefill(self, prompt_ids: list[int]) -> tuple[npt.NDArray[np.float32], KVCache]:
        dummy = np.zeros((1, self.kv_shape[0], 1, self.kv_shape[1]), np.float32)
        cache = KVCache([dummy] * len(self.past_names), np.zeros((1, 1), np.int64), np.zeros(1, np.int64))
        return self._run(np.array([prompt_ids], np.int64), cache)[0], cache

    def _decode(self, tokens: npt.NDArray[np.int64], cache: KVCache) -> npt.NDArray[np.float32]:
        return self._run(tokens[:, None], cache)

    def _build_attention(self) -> AttentionForward:
        return OnnxAttention(self.artifact, self.threads, self.providers)

    def _runtime_info(self) -> dict[str, Any]:
        return {"providers": self.providers, "onnxruntime": ort.__version__}
