"""ONNX Runtime engine: model.onnx on the CPU or CUDA execution provider, all graph optimisations."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.backends.base import Backend, DeviceError

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
INPUTS = {"input_ids", "attention_mask"}


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
        self.providers: list[str] = list(self.session.get_providers())
        log.info("%s: onnxruntime %s providers in use: %s (%d intra-op threads)", self.artifact.name,
                 ort.__version__, self.providers, self.threads)
        if self.device == "cuda" and CUDA not in self.providers:
            raise DeviceError(f"{self.artifact.name}: cuda requested but ONNX Runtime fell back to "
                              f"{self.providers}")
        inputs = {i.name for i in self.session.get_inputs()}
        if inputs != INPUTS:
            raise ValueError(f"model.onnx inputs {sorted(inputs)} differ from the contract's "
                             f"{sorted(INPUTS)}")
        self.output = str(self.artifact.manifest["onnx"]["outputs"][0])

    def _logits(self, input_ids: npt.NDArray[np.int64],
                attention_mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        (logits,) = self.session.run([self.output], feed)
        result: npt.NDArray[np.float32] = np.asarray(logits, dtype=np.float32)
        return result

    def _runtime_info(self) -> dict[str, Any]:
        return {"providers": self.providers, "onnxruntime": ort.__version__}
