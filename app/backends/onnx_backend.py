"""ONNX Runtime engine: model.onnx (or one of its variants, e.g. the int8 model.int8.onnx) on the CPU or CUDA
execution provider; a second session on the attention graph (manifest ``onnx.attention``, outputs logits +
attentions) serves `attend`.

Session options: ``threads`` intra-op threads, no inter-op pool (the graph runs sequentially), no spinning
(idle ORT threads would take CPU from the event loop and other sessions), all graph optimisations, the
CPU memory arena on and memory patterns off (shapes change with every batch: a pattern per shape only costs
memory). On CUDA, inputs and logits go through an IO binding.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.artifacts import Artifact, ArtifactError
from app.backends.base import Backend, DeviceError

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
INPUTS = {"input_ids", "attention_mask"}
ATTENTION_OUTPUTS = ["logits", "attentions"]


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def variant_artifact(artifact: Artifact, variant: str) -> Artifact:
    """The artifact seen through one of its ONNX variants (manifest ``onnx.variants``, schema 1.3): that graph
    as ``onnx.model``, its own metrics in place of the fp32 ones."""
    spec = artifact.manifest["onnx"].get("variants", {}).get(variant)
    if spec is None:
        raise ArtifactError(f"{artifact.name} has no ONNX variant {variant!r}")
    if spec["model"] not in artifact.manifest["files"]:
        raise ArtifactError(f"variant {variant!r}: {spec['model']} is not listed (so not verified) in the manifest")
    onnx = {**artifact.manifest["onnx"], "model": spec["model"], "variant": variant}
    return dataclasses.replace(artifact, manifest={**artifact.manifest, "onnx": onnx, "metrics": spec["metrics"]})


class OnnxBackend(Backend):
    kind = "onnx"

    @classmethod
    def cuda_available(cls) -> bool:
        return CUDA in ort.get_available_providers()

    def _load_model(self) -> None:
        wanted = [CPU]
        if self.device == "cuda":
            # CUDA/cuDNN libraries from the nvidia-* wheels that CUDA torch installs (no system CUDA needed)
            ort.preload_dlls()
            wanted = [CUDA, CPU]
        self.providers: list[str] = wanted
        self.session = self._session(self.artifact.onnx_model)
        self.attention_session = self._session(self._attention_graph())
        self.providers = list(self.session.get_providers())
        log.info("%s: onnxruntime %s providers in use: %s (%d intra-op threads, %s graph)", self.artifact.name,
                 ort.__version__, self.providers, self.threads, self.variant)
        if self.device == "cuda" and CUDA not in self.providers:
            raise DeviceError(f"{self.artifact.name}: cuda requested but ONNX Runtime fell back to "
                              f"{self.providers}")
        self.output = str(self.artifact.manifest["onnx"]["outputs"][0])

    def _session(self, path: Path) -> ort.InferenceSession:
        session = ort.InferenceSession(str(path), sess_options=session_options(self.threads),
                                       providers=self.providers)
        inputs = {i.name for i in session.get_inputs()}
        if inputs != INPUTS:
            raise ValueError(f"{path.name}: ONNX graph inputs {sorted(inputs)} differ from the contract's "
                             f"{sorted(INPUTS)}")
        return session

    @property
    def variant(self) -> str:
        return str(self.artifact.manifest["onnx"].get("variant", "fp32"))

    def variants(self) -> list[str]:
        return sorted(self.artifact.manifest["onnx"].get("variants", {}))

    def with_variant(self, variant: str) -> OnnxBackend:
        """This model on another of its graphs; the tokenizer and the (fp32) attention graph are shared."""
        if variant == self.variant:
            return self
        twin = copy.copy(self)
        twin.artifact = variant_artifact(self.artifact, variant)
        twin.session = twin._session(twin.artifact.onnx_model)
        return twin

    def _attention_graph(self) -> Path:
        onnx = self.artifact.manifest["onnx"]
        if "attention" not in onnx or not set(ATTENTION_OUTPUTS) <= set(onnx.get("attention_outputs", [])):
            raise ValueError(f"manifest declares no onnx.attention graph with outputs {ATTENTION_OUTPUTS} "
                             f"(required to serve attention)")
        return self.artifact.path / str(onnx["attention"])

    def _logits(self, input_ids: npt.NDArray[np.int64],
                attention_mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        if self.device == "cuda":
            return self._bound_logits(input_ids, attention_mask)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        (logits,) = self.session.run([self.output], feed)
        result: npt.NDArray[np.float32] = np.asarray(logits, dtype=np.float32)
        return result

    def _bound_logits(self, input_ids: npt.NDArray[np.int64],
                      attention_mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """One run through an IO binding: inputs copied to the device once, logits written to host memory."""
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids))
        binding.bind_cpu_input("attention_mask", np.ascontiguousarray(attention_mask))
        binding.bind_output(self.output, "cpu")
        self.session.run_with_iobinding(binding)
        result: npt.NDArray[np.float32] = np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)
        return result

    def _attentions(self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
                    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        logits, attentions = self.attention_session.run(ATTENTION_OUTPUTS, feed)
        return np.asarray(logits, dtype=np.float32), np.asarray(attentions, dtype=np.float32)

    def _runtime_info(self) -> dict[str, Any]:
        return {"providers": self.providers, "onnxruntime": ort.__version__, "variant": self.variant}
