"""Knowledge-distillation model code: the loss, the layer-dropped student, the LightningModule (no I/O)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from training.classification.classifier import ENCODER_LAYER, TextClassifier


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """``alpha * T^2 * KL + (1 - alpha) * CE(student, labels)``, Hinton et al. (2015).

    KL is between the temperature-softened distributions, with the teacher's as the target
    (``kl_div(log_softmax(student/T), softmax(teacher/T))``), averaged per example (batchmean).
    T^2 keeps the soft-target gradients on the scale of the hard-label ones.
    """
    t = temperature
    kl = nn.functional.kl_div(nn.functional.log_softmax(student_logits / t, dim=-1),
                              nn.functional.log_softmax(teacher_logits / t, dim=-1),
                              reduction="batchmean", log_target=True)
    ce = nn.functional.cross_entropy(student_logits, labels)
    return alpha * t * t * kl + (1.0 - alpha) * ce


def default_layers(num_layers: int) -> list[int]:
    """Every other layer from the first (DistilBERT): 6 -> [0, 2, 4], 4 -> [0, 2]."""
    return list(range(0, num_layers, 2))


def make_student(teacher: nn.Module, layers: Sequence[int]) -> nn.Module:
    """The teacher's architecture with only ``layers`` kept, every weight copied from the teacher.

    Embeddings, the kept encoder layers (renumbered 0..k-1), the pooler and the classifier head are
    exact copies; works for any HF encoder whose blocks are named ``*.layer.<i>.*`` (BERT, MiniLM,
    RoBERTa, DistilBERT, ...). The student is returned in training mode.
    """
    total = int(teacher.config.num_hidden_layers)
    kept = list(layers)
    if not kept or sorted(set(kept)) != kept or kept[0] < 0 or kept[-1] >= total:
        raise ValueError(f"student layers must be increasing, unique indices in 0..{total - 1}; got {kept}")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(kept)
    student = type(teacher)(config)
    renumber = {old: new for new, old in enumerate(kept)}
    state = {}
    for key, value in teacher.state_dict().items():
        match = ENCODER_LAYER.search(key)
        if match is None:
            state[key] = value.clone()
        elif int(match.group(1)) in renumber:
            new_key = f"{key[:match.start()]}.layer.{renumber[int(match.group(1))]}.{key[match.end():]}"
            state[new_key] = value.clone()
    student.load_state_dict(state, strict=True)
    return student.train()


class _Shared:
    """Holds the frozen teacher for the student module: a deep copy of the student (Lightning's weight averaging
    keeps one) shares the teacher instead of copying its weights."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __deepcopy__(self, memo: dict[int, object]) -> _Shared:
        return self


class DistillationModule(TextClassifier):
    """A TextClassifier (the student) trained on the distillation loss.

    Validation, test, metrics and the optimiser are inherited: evaluation uses plain cross-entropy.
    Each training batch carries cached ``teacher_logits``, or the teacher attached with
    :meth:`attach_teacher` computes them on the fly. The teacher is deliberately not a registered
    submodule: it is not in ``parameters()`` (so not in the optimiser), not in the checkpoint, not in a copy of the
    module, and ``.train()`` never reaches it; it stays frozen in eval mode and only runs under ``no_grad``.
    """

    def __init__(self, base_model: str, labels: list[str], alpha: float = 0.5, temperature: float = 2.0,
                 learning_rate: float = 5e-5, weight_decay: float = 0.01, warmup_ratio: float = 0.06,
                 freeze_embeddings: bool = False, frozen_layers: int = 0, layer_lr_decay: float = 1.0) -> None:
        super().__init__(base_model, labels, learning_rate, weight_decay, warmup_ratio, freeze_embeddings,
                         frozen_layers, layer_lr_decay=layer_lr_decay)
        if not 0.0 <= alpha <= 1.0 or temperature <= 0:
            raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0; got alpha={alpha}, T={temperature}")
        self.alpha = alpha
        self.temperature = temperature
        self._teacher: _Shared | None = None

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher.module if self._teacher is not None else None

    def attach_teacher(self, teacher: nn.Module) -> None:
        """Use ``teacher`` for batches without cached logits (frozen, eval mode, unregistered)."""
        self._teacher = _Shared(teacher.eval().requires_grad_(False))

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def teacher_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "teacher_logits" in batch:
            return batch["teacher_logits"]
        if self.teacher is None:
            raise RuntimeError("batch has no cached teacher_logits and no teacher is attached")
        with torch.no_grad():
            logits: torch.Tensor = self.teacher(input_ids=batch["input_ids"],
                                                attention_mask=batch["attention_mask"]).logits
        return logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = distillation_loss(logits, self.teacher_logits(batch), batch["labels"], self.alpha,
                                 self.temperature)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss
