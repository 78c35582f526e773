"""Generation on ONNX Runtime: a decoding loop over model.onnx, the KV-cache decoder of the artifact contract
(the graph always takes a past; the first call passes one masked dummy position, see models/README.md), or over
one of its variants (the weight-only int8 ``model.int8.onnx``), and attention maps from ``model.attn.onnx``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from app.runtimes.onnx import OnnxRuntime
from app.tasks.attention import AttentionUnavailable
from app.tasks.generation.attention import AttendingGenerator, AttentionForward, AttentionOutputs
from app.tasks.generation.cache import KVCache, left_pad
from contract import Artifact

FIXED_INPUTS = ["input_ids", "attention_mask", "position_ids"]
ATTENTION_INPUTS = ("input_ids", "attention_mask")
ATTENTION_OUTPUTS = ["logits", "attentions"]
ROUTING = "routing"
"""The attention graph's optional third output (Mixture of Experts, schema 1.5): ``[layers, batch, seq, top_k]``."""


class OnnxGenerator(AttendingGenerator):
    runtime: OnnxRuntime

    def __init__(self, artifact: Artifact, runtime: OnnxRuntime) -> None:
        super().__init__(artifact, runtime)
        self._attention_source: OnnxGenerator | None = None
        """The generator whose attention forward this one uses (a variant's: the fp32 model's, built once)."""

    def variants(self) -> list[str]:
        return self.artifact.onnx_variants

    def with_variant(self, variant: str) -> OnnxGenerator:
        """This generator on another of its decoder graphs; the tokenizer, the chat template and the attention
        graph (there is one, fp32) are shared."""
        if variant == self.artifact.onnx_variant:
            return self
        twin = OnnxGenerator(self.artifact.variant(variant), self.runtime)
        twin._tokenizer, twin.chat_template, twin._attention_source = self.tokenizer, self.chat_template, self
        twin._load_model()
        return twin

    def _info(self) -> dict[str, Any]:
        return {**super()._info(), "variant": self.artifact.onnx_variant}

    def _load_model(self) -> None:
        spec = self.artifact.onnx
        if not spec:
            raise ValueError("this artifact has no ONNX decoder (exported without --model.onnx); serve it with "
                             "APP_RUNTIME=torch")
        self.artifact.require(str(spec["model"]))
        self.session = self.runtime.session(self.artifact.onnx_model)
        inputs = self.session.get_inputs()
        names = [i.name for i in inputs]
        if names[:3] != FIXED_INPUTS or len(names) < 5 or names != list(spec["inputs"]):
            raise ValueError(f"model.onnx inputs {names} do not follow the KV-cache decoder contract")
        self.past_names = names[3:]
        heads, head_dim = inputs[3].shape[1], inputs[3].shape[3]
        if not isinstance(heads, int) or not isinstance(head_dim, int):
            raise ValueError(f"model.onnx past inputs need static heads and head_dim, got {inputs[3].shape}")
        self.kv_shape = (heads, head_dim)

    def _run(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64], positions: npt.NDArray[np.int64],
             past: list[Any]) -> tuple[npt.NDArray[np.float32], list[Any]]:
        """``ids`` and ``positions`` ``[rows, width]`` after ``past``, ``mask`` over both: logits ``[rows, vocab]``
        after the last of them, and the present tensors."""
        feed: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                                **dict(zip(self.past_names, past, strict=True))}
        logits, *present = self.runtime.run(self.session, None, feed)
        return np.asarray(logits[:, -1], dtype=np.float32), present

    def _prefill(self, prompts: list[list[int]]) -> tuple[npt.NDArray[np.float32], KVCache]:
        ids, mask, positions = left_pad(prompts)
        dummy = np.zeros((len(prompts), self.kv_shape[0], 1, self.kv_shape[1]), np.float32)
        mask = np.pad(mask, ((0, 0), (1, 0)))  # the dummy past position, masked
        logits, present = self._run(ids, mask, positions, [dummy] * len(self.past_names))
        return logits, KVCache(present, mask, mask.sum(axis=1))

    def _decode(self, tokens: npt.NDArray[np.int64], cache: KVCache) -> npt.NDArray[np.float32]:
        mask, positions = cache.step_inputs()
        logits, present = self._run(tokens[:, None], mask, positions, cache.past)
        cache.advance(present, mask)
        return logits

    def _build_attention(self) -> AttentionForward:
        """A session on ``model.attn.onnx`` (schema 1.2, see models/README.md): ``input_ids``, ``attention_mask``
        ``[batch, seq]`` -> ``logits`` at the last position ``[batch, vocab]``, ``attentions``
        ``[layers, batch, heads, seq, seq]`` and, when the manifest lists it (schema 1.5), ``routing``."""
        if self._attention_source is not None:
            return self._attention_source._attention_forward()
        spec = self.artifact.onnx
        if "attention" not in spec or not set(ATTENTION_OUTPUTS) <= set(spec.get("attention_outputs", [])):
            raise AttentionUnavailable(
                f"model {self.artifact.name!r} has no ONNX attention graph (model.attn.onnx, exported with schema "
                f"1.2 and later): re-export it, or serve it with APP_RUNTIME=torch")
        self.artifact.require(str(spec["attention"]))
        session = self.runtime.session(self.artifact.path / str(spec["attention"]), ATTENTION_INPUTS)
        outputs = [*ATTENTION_OUTPUTS, ROUTING] if ROUTING in spec["attention_outputs"] else ATTENTION_OUTPUTS

        def forward(input_ids: npt.NDArray[np.int64]) -> AttentionOutputs:
            feed = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}
            logits, attentions, *routing = self.runtime.run(session, outputs, feed)
            return AttentionOutputs(np.asarray(logits[0], dtype=np.float32),
                                    np.asarray(attentions[:, 0], dtype=np.float32),
                                    np.asarray(routing[0][:, 0], dtype=np.int64) if routing else None)

        return forward
