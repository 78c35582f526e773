"""ONNX Runtime engine: model.onnx on the CPU or CUDA execution provider, all graph optimisations; a second
session on the attention graph (manifest ``onnx.attention``, outputs logits + attentions) serves `attend`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.backends.base import Backend, DeviceError

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
INPUTS = {"input_ids", "attention_mask"}
ATTENTION_OUTPUTS = ["logits", "attentions"]


class OnnxBackend(Backend):
    kind = "onnx"

    @classmethod
    def cuda_available(cls) -> bool:
        return CUDA in ort.get_available_providers()

    def _load_model(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        wanted = [CPU]
        if self.device == "cuda":
            # CUDA/cuDNN libraries from the nvidia-* wheels that CUDA torch installs (no system CUDA needed)
            ort.preload_dlls()
            wanted = [CUDA, CPU]
        self.session = ort.InferenceSession(str(self.artifact.onnx_model), sess_options=options,
                                            providers=wanted)
        self.attention_session = ort.InferenceSession(str(self._attention_graph()), sess_options=options,
                                                      providers=wanted)
        self.providers: list[str] = list(self.session.get_providers())
        log.info("%s: onnxruntime %s providers in use: %s (%d intra-op threads)", self.artifact.name,
                 ort.__version__, self.providers, self.threads)
        if self.device == "cuda" and CUDA not in self.providers:
            raise DeviceError(f"{self.artifact.name}: cuda requested but ONNX Runtime fell back to "
                              f"{self.providers}")
        for session in (self.session, self.attention_session):
            inputs = {i.name for i in session.get_inputs()}
            if inputs != INPUTS:
                raise ValueError(f"ONNX graph inputs {sorted(inputs)} differ from the contract's "
                                 f"{sorted(INPUTS)}")
        self.output = str(self.artifact.manifest["onnx"]["outputs"][0])

    def _attention_graph(self) -> Path:
        onnx = self.artifact.manifest["onnx"]
        if "attention" not in onnx or not set(ATTENTION_OUTPUTS) <= set(onnx.get("attention_outputs", [])):
            raise ValueError(f"manifest declares no onnx.attention graph with outputs {ATTENTION_OUTPUTS} "
                             f"(required to serve attention)")
        return self.artifact.path / str(onnx["attention"])

    def _logits(self, input_ids: npt.NDArray[np.int64],
                attention_mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        (logits,) = self.session.run([self.output], feed)
        result: npt.NDArray[np.float32] = np.asarray(logits, dtype=np.float32)
        return result

    def _attentions(self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
                    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        logits, attentions = self.attention_session.run(ATTENTION_OUTPUTS, feed)
        return np.asarray(logits, dtype=np.float32), np.asarray(attentions, dtype=np.float32)

    def _runtime_info(self) -> dict[str, Any]:
        return {"providers": self.providers, "onnxruntime": ort.__version__}
