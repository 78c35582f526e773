"""The text classifier: a LightningModule fine-tuning any Hugging Face sequence classifier (sentiment is this with
the labels negative/positive)."""

from __future__ import annotations

import re
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

ENCODER_LAYER = re.compile(r"\.layer\.(\d+)\.")
"""The encoder block a parameter or state-dict key belongs to (``*.layer.<i>.*``: BERT, MiniLM, MPNet, ...)."""


def build_classifier(base_model: str, labels: list[str], attn_implementation: str | None = None) -> nn.Module:
    """An HF sequence classifier from a folder or hub id, with our label names in its config (and a new head when
    the folder has none). Attention: None = sdpa where the architecture has it (BERT), else eager (MPNet)."""
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        attn_implementation=attn_implementation,
    )
    return model.train()  # from_pretrained returns eval mode: dropout would be off


def freeze_lower_layers(model: nn.Module, count: int) -> None:
    """Freeze the embeddings and the lowest ``count`` encoder layers: the backward pass stops above them, so a step
    costs less (2 of MiniLM-L6's 6 layers: 0.83x the fit time on 2 cores)."""
    if count <= 0:
        return
    base = model.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or count > len(layers):
        have = f"{len(layers)} encoder layers" if isinstance(layers, nn.ModuleList) else "no encoder.layer list"
        raise ValueError(f"cannot freeze {count} layers of {type(model).__name__}: it has {have}")
    base.embeddings.requires_grad_(False)
    for layer in layers[:count]:
        layer.requires_grad_(False)


class TextClassifier(L.LightningModule):
    """Cross-entropy over ``labels``; logs loss, accuracy and macro F1 on validation and test."""

    def __init__(self, base_model: str, labels: list[str], learning_rate: float = 5e-5,
                 weight_decay: float = 0.01, warmup_ratio: float = 0.06, freeze_embeddings: bool = False,
                 frozen_layers: int = 0, label_smoothing: float = 0.0, layer_lr_decay: float = 1.0,
                 r_drop: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0 or not 0.0 < layer_lr_decay <= 1.0 or r_drop < 0.0:
            raise ValueError(f"need 0 <= label_smoothing < 1, 0 < layer_lr_decay <= 1 and r_drop >= 0; got "
                             f"{label_smoothing}, {layer_lr_decay}, {r_drop}")
        self.save_hyperparameters()
        self.model = build_classifier(base_model, labels)
        if freeze_embeddings:
            self.model.get_input_embeddings().weight.requires_grad_(False)
        freeze_lower_layers(self.model, frozen_layers)
        n = len(labels)
        self.val_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes=n, average="macro")
        self.test_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.test_f1 = MulticlassF1Score(num_classes=n, average="macro")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["input_ids"], batch["attention_mask"])
        return nn.functional.cross_entropy(logits, batch["labels"]), logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Cross-entropy with ``label_smoothing``; with ``r_drop`` > 0 the batch runs twice (two dropout masks) and
        the symmetric KL between the two predictions, times ``r_drop``, is added (R-Drop, Liang et al. 2021).
        Validation and test losses stay plain cross-entropy."""
        hp, labels = self.hparams, batch["labels"]
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = nn.functional.cross_entropy(logits, labels, label_smoothing=hp.label_smoothing)
        if hp.r_drop > 0:
            again = self(batch["input_ids"], batch["attention_mask"])
            loss = (loss + nn.functional.cross_entropy(again, labels, label_smoothing=hp.label_smoothing)) / 2
            p, q = nn.functional.log_softmax(logits, -1), nn.functional.log_softmax(again, -1)
            symmetric_kl = (nn.functional.kl_div(p, q, reduction="batchmean", log_target=True)
                            + nn.functional.kl_div(q, p, reduction="batchmean", log_target=True)) / 2
            loss = loss + hp.r_drop * symmetric_kl
        self.log("train_loss", loss, prog_bar=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        preds = logits.argmax(-1)
        self.val_acc(preds, batch["labels"])
        self.val_f1(preds, batch["labels"])
        size = len(batch["labels"])
        self.log("val_loss", loss, prog_bar=True, batch_size=size, sync_dist=True)  # mean over every rank
        self.log("val_acc", self.val_acc, prog_bar=True, batch_size=size)
        self.log("val_f1", self.val_f1, batch_size=size)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        preds = logits.argmax(-1)
        self.test_acc(preds, batch["labels"])
        self.test_f1(preds, batch["labels"])
        size = len(batch["labels"])
        self.log("test_loss", loss, batch_size=size, sync_dist=True)
        self.log("test_acc", self.test_acc, batch_size=size)
        self.log("test_f1", self.test_f1, batch_size=size)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip here for a fused optimizer: Lightning's mixed-precision plugin refuses to (it assumes fp16's grad
        scaler, which bf16-mixed does not use)."""
        if not optimizer.defaults.get("fused"):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        elif gradient_clip_val:
            if gradient_clip_algorithm == "value":  # both skip parameters without a gradient (frozen ones)
                nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)
            else:
                nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)

    def depth_below_head(self, name: str) -> int:
        """How many blocks a parameter sits below the head, for layer-wise LR decay (``learning_rate *
        layer_lr_decay ** depth``): k for encoder layer L-k, L+1 for the embeddings, 0 for the rest (the head, the
        pooler, weights every layer shares such as MPNet's relative attention bias)."""
        total = int(self.model.config.num_hidden_layers)
        match = ENCODER_LAYER.search(name)
        if match is not None:
            return total - int(match.group(1))
        return total + 1 if ".embeddings." in f".{name}" else 0

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                weight_decay = 0.0 if param.ndim < 2 or "LayerNorm" in name else hp.weight_decay
                lr = hp.learning_rate * hp.layer_lr_decay ** self.depth_below_head(name)
                groups.setdefault((lr, weight_decay), []).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()],
            lr=hp.learning_rate,
            fused=self.device.type == "cpu",  # one kernel for every parameter: 12 vs 56 ms a MiniLM step on 2 cores
        )
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(total * hp.warmup_ratio), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
