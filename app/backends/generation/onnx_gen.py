"""ONNX Runtime generation: a decoding loop over model.onnx, the KV-cache decoder of the artifact contract.

The graph always takes a past; the first call passes one masked dummy position (see models/README.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.backends.generation.base import Generator

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
FIXED_INPUTS = ["input_ids", "attention_mask", "position_ids"]


@dataclass
class _Cache:
    past: list[npt.NDArray[np.float32]]
    mask: npt.NDArray[np.int64]
    position: int


class OnnxGenerator(Generator):
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

    def _run(self, ids: list[int], cache: _Cache) -> npt.NDArray[np.float32]:
        positions = np.arange(cache.position, cache.position + len(ids), dtype=np.int64)[None]
        cache.mask = np.concatenate([cache.mask, np.ones((1, len(ids)), np.int64)], axis=1)
        feed: dict[str, Any] = {"input_ids": np.array([ids], np.int64), "attention_mask": cache.mask,
                                "position_ids": positions, **dict(zip(self.past_names, cache.past, strict=True))}
        logits, *cache.past = self.session.run(None, feed)
        cache.position += len(ids)
        result: npt.NDArray[np.float32] = np.asarray(logits[0, -1], dtype=np.float32)
        return result

    def _prefill(self, prompt_ids: list[int]) -> tuple[npt.NDArray[np.float32], Any]:
        dummy = np.zeros((1, self.kv_shape[0], 1, self.kv_shape[1]), np.float32)
        cache = _Cache(past=[dummy] * len(self.past_names), mask=np.zeros((1, 1), np.int64), position=0)
        return self._run(prompt_ids, cache), cache

    def _decode(self, token: int, state: Any) -> npt.NDArray[np.float32]:
        return self._run([token], state)

    def _runtime_info(self) -> dict[str, Any]:
        return {"providers": self.providers, "onnxruntime": ort.__version__}
