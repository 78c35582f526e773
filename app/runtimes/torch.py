"""PyTorch: HF models (or other modules saved as config.json + model.safetensors) loaded from an artifact's folder,
fp32/bf16/fp16 on CUDA; fp32 on CPU, and bf16 where the CPU computes it natively (avx512_bf16 or AMX: oneDNN's
bf16 matmuls; benchmarks/README.md, "Torch runtime on CPU").

The intra-op thread pool is global to the process: it is set once, here. `traced` runs a model's forward as one
traced graph (no Python between its ops). Attention maps need eager attention
(sdpa returns no weights, and eager measured ~10% slower for inference on CPU), so `eager_view` gives a second
module tree over the *same* weight tensors (no second copy in memory).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from safetensors.torch import load_model
from transformers.utils import logging as hf_logging

from app.runtimes.base import Dtype, Runtime

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, device: str, threads: int, dtype: str = "fp32") -> None:
        super().__init__(device, threads, dtype)
        if device == "cpu" and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    @classmethod
    def cuda_available(cls) -> bool:
        return bool(torch.cuda.is_available())

    @classmethod
    def dtypes(cls, device: str) -> tuple[Dtype, ...]:
        if device == "cuda":
            return ("fp32", "bf16", "fp16")
        return ("fp32", "bf16") if cpu_computes_bf16() else ("fp32",)

    def load(self, auto_class: Any, folder: Path) -> Any:
        """``auto_class.from_pretrained(folder)`` (safetensors only, local files only) on the device, in eval
        mode, in the runtime's dtype."""
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped upstream
        model = auto_class.from_pretrained(folder, dtype=DTYPES[self.dtype], local_files_only=True,
                                           use_safetensors=True)
        log.info("%s: torch %s on %s (%s, %d threads)", folder.parent.name, torch.__version__, self.device,
                 self.dtype, torch.get_num_threads())
        return model.to(self.device).eval().requires_grad_(False)

    def load_module(self, build: Callable[[dict[str, Any]], torch.nn.Module], folder: Path) -> torch.nn.Module:
        """A module that is not an HF model: ``build(config.json's object)``, then ``model.safetensors`` loaded
        into it (every tensor, nothing left over), on the device, in eval mode, in the runtime's dtype."""
        module = build(json.loads((folder / "config.json").read_text()))
        load_model(module, str(folder / "model.safetensors"), strict=True)
        log.info("%s: torch %s on %s (%s, %d threads)", folder.parent.name, torch.__version__, self.device,
                 self.dtype, torch.get_num_threads())
        return module.to(device=self.device, dtype=DTYPES[self.dtype]).eval().requires_grad_(False)

    def traced(self, name: str, forward: Callable[..., torch.Tensor], example: Sequence[npt.NDArray[Any]],
               check: Sequence[npt.NDArray[Any]]) -> Callable[..., torch.Tensor]:
        """``forward`` (tensors in, a tensor out, over a loaded model) as a TorchScript graph traced on ``example``.
        Its ops run one after another in C++ and the GIL is released once per call, not taken back between ops, so
        concurrent inferences and the event loop stop waiting on each other (benchmarks/README.md, "Torch runtime:
        one traced graph per call"). ``check``, inputs of other shapes, must give what ``forward`` gives; when
        tracing fails (torch deprecates `torch.jit.trace`) or disagrees, ``forward`` itself is returned, with a
        warning."""
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit's deprecation, transformers' tracer notes
                inputs = [self.tensor(a) for a in example]
                traced = torch.jit.trace(forward, tuple(inputs), check_trace=False)  # type: ignore[no-untyped-call]
                others = [self.tensor(a) for a in check]
                same = torch.allclose(traced(*others).float(), forward(*others).float(), rtol=1e-3, atol=1e-4)
        except Exception as exc:
            log.warning("%s: runs eagerly, tracing failed: %s", name, exc)
            return forward
        if not same:
            log.warning("%s: runs eagerly, its traced graph disagrees with it on other shapes", name)
            return forward
        return traced  # type: ignore[no-any-return]

    @staticmethod
    def eager_view(model: Any) -> Any:
        """A copy of ``model``'s module tree that shares every parameter and buffer with it and runs eager
        attention (which returns attention weights)."""
        shared = {id(tensor): tensor for tensor in (*model.parameters(), *model.buffers())}
        view = copy.deepcopy(model, shared)
        view.set_attn_implementation("eager")
        return view

    def tensor(self, array: npt.NDArray[Any]) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device)

    @staticmethod
    def numpy(tensor: torch.Tensor) -> npt.NDArray[np.float32]:
        result: npt.NDArray[np.float32] = tensor.float().cpu().numpy()
        return result

    def _info(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "torch": torch.__version__}


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 instructions (avx512_bf16 or AMX tiles); without them bf16 is emulated and slower
    than fp32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
