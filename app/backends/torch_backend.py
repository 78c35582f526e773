"""PyTorch engine: the HF folder via transformers, fp32 on CPU, fp32/bf16/fp16 on CUDA.

Classification runs the default (sdpa) attention; `attend` needs eager attention (sdpa returns no
attention weights), which measured ~10% slower for classification on CPU. So load() builds a second,
eager module over the *same* weight tensors (no second copy of the weights in memory)."""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import AutoModelForSequenceClassification
from transformers.utils import logging as hf_logging

from app.backends.base import Backend

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def _set_cpu_threads(threads: int) -> None:
    """Once per process: torch's intra-op pool is global."""
    torch.set_num_threads(threads)


class TorchBackend(Backend):
    kind = "torch"

    @classmethod
    def cuda_available(cls) -> bool:
        return bool(torch.cuda.is_available())

    def _load_model(self) -> None:
        if self.device == "cpu":
            _set_cpu_threads(self.threads)
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped upstream
        model = AutoModelForSequenceClassification.from_pretrained(
            self.artifact.hf_dir, dtype=DTYPES[self.dtype], local_files_only=True, use_safetensors=True)
        self.model = model.to(self.device).eval()
        eager = AutoModelForSequenceClassification.from_pretrained(
            self.artifact.hf_dir, dtype=DTYPES[self.dtype], local_files_only=True, use_safetensors=True,
            attn_implementation="eager")
        eager.load_state_dict(self.model.state_dict(), assign=True)
        self.attention_model = eager.to(self.device).eval()
        log.info("%s: torch %s on %s (%s, %d threads)", self.artifact.name, torch.__version__, self.device,
                 self.dtype, torch.get_num_threads())

    def _logits(self, input_ids: npt.NDArray[np.int64],
                attention_mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(input_ids).to(self.device),
                             attention_mask=torch.from_numpy(attention_mask).to(self.device))
            logits: npt.NDArray[np.float32] = out.logits.float().cpu().numpy()
        return logits

    def _attentions(self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
                    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        with torch.inference_mode():
            out = self.attention_model(input_ids=torch.from_numpy(input_ids).to(self.device),
                                       attention_mask=torch.from_numpy(attention_mask).to(self.device),
                                       output_attentions=True)
            logits: npt.NDArray[np.float32] = out.logits.float().cpu().numpy()
            attentions: npt.NDArray[np.float32] = torch.stack(out.attentions).float().cpu().numpy()
        return logits, attentions

    def _runtime_info(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "torch": torch.__version__}
