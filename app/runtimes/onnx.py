"""ONNX Runtime: every inference session of the service is made here, with one set of options.

Session options: ``threads`` intra-op threads, no inter-op pool (graphs run sequentially), no spinning (idle ORT
threads would take CPU from the event loop and other sessions), all graph optimisations, the CPU memory arena on
and memory patterns off (shapes change with every batch: a pattern per shape only costs memory). On CUDA the
session must really run on the CUDA provider (a silent fallback to the CPU is a `DeviceError`), and `run` goes
through an IO binding.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app.runtimes.base import DeviceError, Runtime

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


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


@functools.cache
def _preload_cuda_libraries() -> None:
    """CUDA/cuDNN libraries from the nvidia-* wheels that CUDA torch installs (no system CUDA needed)."""
    ort.preload_dlls()


class OnnxRuntime(Runtime):
    name = "onnx"

    @classmethod
    def cuda_available(cls) -> bool:
        return CUDA in ort.get_available_providers()

    @property
    def providers(self) -> list[str]:
        return [CUDA, CPU] if self.device == "cuda" else [CPU]

    def session(self, path: Path, inputs: Collection[str] | None = None) -> ort.InferenceSession:
        """A session on ``path``; ``inputs``: the input names the graph must have (any order)."""
        if self.device == "cuda":
            _preload_cuda_libraries()
        session = ort.InferenceSession(str(path), sess_options=session_options(self.threads),
                                       providers=self.providers)
        used = list(session.get_providers())
        if self.device == "cuda" and CUDA not in used:
            raise DeviceError(f"{path.name}: cuda requested but ONNX Runtime fell back to {used}")
        names = {i.name for i in session.get_inputs()}
        if inputs is not None and names != set(inputs):
            raise ValueError(f"{path.name}: ONNX graph inputs {sorted(names)} differ from the contract's "
                             f"{sorted(inputs)}")
        log.info("%s: onnxruntime %s providers in use: %s (%d intra-op threads)", path.name, ort.__version__, used,
                 self.threads)
        return session

    def run(self, session: ort.InferenceSession, outputs: Sequence[str] | None,
            feed: dict[str, Any]) -> list[Any]:
        """``outputs`` (None = all) of one run as numpy arrays; on CUDA inputs are copied to the device once and
        the outputs written to host memory through an IO binding."""
        if self.device != "cuda":
            return list(session.run(None if outputs is None else list(outputs), feed))
        return self.run_bound(session, outputs, feed)

    @staticmethod
    def run_bound(session: ort.InferenceSession, outputs: Sequence[str] | None, feed: dict[str, Any]) -> list[Any]:
        """`run` through an IO binding (the CUDA path; it runs on the CPU provider too)."""
        binding = session.io_binding()
        for name, value in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in outputs or [o.name for o in session.get_outputs()]:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())

    def _info(self) -> dict[str, Any]:
        return {"providers": self.providers, "onnxruntime": ort.__version__}
