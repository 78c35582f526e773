"""The classifier's forward on each runtime: ``logits(ids, mask)`` and ``attentions(ids, mask)``.

ONNX Runtime: ``model.onnx`` (or a variant such as the int8 ``model.int8.onnx``) for logits, and the attention
graph (manifest ``onnx.attention``, outputs logits + attentions). PyTorch: the HF folder with sdpa attention
for logits, run as a traced graph (`TorchRuntime.traced`), and an eager view over the same weights for attention
maps.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from app.runtimes import Runtime
from app.tasks.text import trace_inputs
from contract import Artifact

INPUTS = ("input_ids", "attention_mask")
ATTENTION_OUTPUTS = ["logits", "attentions"]
Ids = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]


class Forward(Protocol):
    variant: str

    def logits(self, input_ids: Ids, attention_mask: Ids) -> Floats:
        """Logits ``[batch, labels]``."""

    def attentions(self, input_ids: Ids, attention_mask: Ids) -> tuple[Floats, Floats]:
        """Logits ``[batch, labels]`` and attentions ``[layers, batch, heads, seq, seq]``."""

    def variants(self) -> list[str]: ...

    def on_variant(self, artifact: Artifact) -> Forward: ...

    def info(self) -> dict[str, Any]: ...


class OnnxForward:
    def __init__(self, artifact: Artifact, runtime: Any, attention_session: Any = None) -> None:
        self.runtime, self.artifact = runtime, artifact
        self.session = runtime.session(artifact.onnx_model, INPUTS)
        self.attention_session = attention_session or runtime.session(self._attention_graph(), INPUTS)
        self.output = str(artifact.onnx["outputs"][0])
        self.variant = artifact.onnx_variant

    def _attention_graph(self) -> Any:
        onnx = self.artifact.onnx
        if "attention" not in onnx or not set(ATTENTION_OUTPUTS) <= set(onnx.get("attention_outputs", [])):
            raise ValueError(f"manifest declares no onnx.attention graph with outputs {ATTENTION_OUTPUTS} "
                             f"(required to serve attention)")
        self.artifact.require(str(onnx["attention"]))
        return self.artifact.path / str(onnx["attention"])

    def logits(self, input_ids: Ids, attention_mask: Ids) -> Floats:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        (logits,) = self.runtime.run(self.session, [self.output], feed)
        return np.asarray(logits, dtype=np.float32)

    def attentions(self, input_ids: Ids, attention_mask: Ids) -> tuple[Floats, Floats]:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        logits, attentions = self.runtime.run(self.attention_session, ATTENTION_OUTPUTS, feed)
        return np.asarray(logits, dtype=np.float32), np.asarray(attentions, dtype=np.float32)

    def variants(self) -> list[str]:
        return self.artifact.onnx_variants

    def on_variant(self, artifact: Artifact) -> OnnxForward:
        return OnnxForward(artifact, self.runtime, self.attention_session)

    def info(self) -> dict[str, Any]:
        return {"variant": self.variant}


class TorchForward:
    variant = "fp32"

    def __init__(self, artifact: Artifact, runtime: Any) -> None:
        from transformers import AutoModelForSequenceClassification

        self.runtime = runtime
        self.model = runtime.load(AutoModelForSequenceClassification, artifact.hf_dir)
        self.attention_model = runtime.eager_view(self.model)
        self._logits = runtime.traced(artifact.name, self._eager_logits,
                                      *trace_inputs(int(self.model.config.vocab_size)))

    def _eager_logits(self, input_ids: Any, attention_mask: Any) -> Any:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def logits(self, input_ids: Ids, attention_mask: Ids) -> Floats:
        import torch

        with torch.inference_mode():
            logits = self._logits(self.runtime.tensor(input_ids), self.runtime.tensor(attention_mask))
            return self.runtime.numpy(logits)  # type: ignore[no-any-return]

    def attentions(self, input_ids: Ids, attention_mask: Ids) -> tuple[Floats, Floats]:
        import torch

        with torch.inference_mode():
            out = self.attention_model(input_ids=self.runtime.tensor(input_ids),
                                       attention_mask=self.runtime.tensor(attention_mask), output_attentions=True)
            return self.runtime.numpy(out.logits), self.runtime.numpy(torch.stack(out.attentions))

    def variants(self) -> list[str]:
        return []

    def on_variant(self, artifact: Artifact) -> TorchForward:
        raise ValueError(f"the torch runtime serves no ONNX variant of {artifact.name}")

    def info(self) -> dict[str, Any]:
        return {}


def make_forward(artifact: Artifact, runtime: Runtime) -> Forward:
    if runtime.name == "onnx":
        return OnnxForward(artifact, runtime)
    return TorchForward(artifact, runtime)
