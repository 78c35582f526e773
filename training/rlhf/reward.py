"""Sentiment scores from a text-classification artifact in models/, run with ONNX Runtime as the server runs it: the
artifact opened (and verified) through `contract.open_artifact`, texts tokenised with its hf/tokenizer.json by
`tokenizers`, one of its graphs (model.onnx or a variant such as model.int8.onnx) in a CPU session.

The PPO reward is a function of the target label's logits. ``log_odds`` (default) = logit(target) - logsumexp(other
logits) (= log p / (1 - p); for two labels, the logit difference): it keeps separating "rather negative" from "very
negative" where a probability is flat near 0, so the batches of a policy that starts far from the target still have
a signal, and whitened advantages see a well-spread score. Being unbounded it also rewards ever more extreme text,
which the KL penalty keeps in check. ``probability`` = softmax(target) is bounded in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract import TEXT_CLASSIFICATION, open_artifact
from training.classification.onnx_classifier import OnnxClassifier, serving_tokenizer

KINDS = ("log_odds", "probability")


class SentimentScorer:
    """Logits of a verified text-classification artifact's ONNX graph (``variant``: a name in onnx.variants)."""

    def __init__(self, folder: Path, variant: str | None = None, threads: int = 1, batch_size: int = 64) -> None:
        artifact = open_artifact(Path(folder))
        if artifact.task != TEXT_CLASSIFICATION:
            raise ValueError(f"{folder}: task {artifact.task!r}, a reward model must be text-classification")
        variants = artifact.onnx.get("variants") or {}
        if variant is not None and variant not in variants:
            raise ValueError(f"{folder}: no ONNX variant {variant!r} (has {sorted(variants) or 'none'})")
        graph = str(variants[variant]["model"]) if variant else str(artifact.onnx["model"])
        artifact.require(graph)  # listed, so its checksum was verified
        self.name, self.labels, self.graph = artifact.name, artifact.labels, graph
        self.manifest_sha256, self.batch_size = artifact.manifest_sha256, batch_size
        self.classifier = OnnxClassifier(artifact.path / graph, serving_tokenizer(artifact.hf_dir, artifact.max_length),
                                         threads)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "graph": self.graph, "manifest_sha256": self.manifest_sha256}

    def label_index(self, label: str) -> int:
        if label not in self.labels:
            raise ValueError(f"{self.name}: no label {label!r} (labels {self.labels})")
        return self.labels.index(label)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), labels]`` float64, in batches of ``batch_size``."""
        return self.classifier.logits(texts, self.batch_size)

    def scores(self, texts: Sequence[str], target: str, kind: str = "log_odds") -> np.ndarray:
        """The target label's log-odds or probability for each text."""
        if kind not in KINDS:
            raise ValueError(f"reward kind {kind!r}: choose one of {KINDS}")
        logits = self.logits(texts)
        index = self.label_index(target)
        others = np.delete(logits, index, axis=1)
        log_odds = logits[:, index] - np.logaddexp.reduce(others, axis=1)
        return log_odds if kind == "log_odds" else 1.0 / (1.0 + np.exp(-log_odds))

    def predicts(self, texts: Sequence[str], target: str) -> np.ndarray:
        """True where the arg-max label is ``target``."""
        return np.asarray(self.logits(texts).argmax(axis=1) == self.label_index(target))


class Reward:
    """texts -> reward tensor: the scorer's ``kind`` score of ``target`` (the callable the PPO module calls)."""

    def __init__(self, scorer: SentimentScorer, target: str, kind: str = "log_odds") -> None:
        scorer.label_index(target)
        if kind not in KINDS:
            raise ValueError(f"reward kind {kind!r}: choose one of {KINDS}")
        self.scorer, self.target, self.kind = scorer, target, kind

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(self.scorer.scores(texts, self.target, self.kind)).float()
