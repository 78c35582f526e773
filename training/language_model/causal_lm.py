"""Causal language models in Lightning: what every LM module shares (`NextTokenLM`), and a GPT-2 from a size
preset or any HF causal LM to fine-tune (`CausalLM`)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, get_cosine_schedule_with_warmup

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_head": 2, "n_embd": 64},
    "small": {"n_layer": 4, "n_head": 4, "n_embd": 256},
    "medium": {"n_layer": 6, "n_head": 8, "n_embd": 384},
}


def gpt2_config(preset: str, vocab_size: int, context_length: int, eos_id: int) -> dict[str, Any]:
    """GPT2Config keyword arguments of a preset (dropout off: short CPU runs do not overfit)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return {**PRESETS[preset], "vocab_size": vocab_size, "n_positions": context_length, "bos_token_id": eos_id,
            "eos_token_id": eos_id, "pad_token_id": eos_id, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "attn_pdrop": 0.0}


class NextTokenLM(L.LightningModule):
    """What the LM modules share: next-token cross-entropy logged as train_loss, val_loss and val_ppl = exp(mean
    val loss per token), summed over ranks; AdamW (no decay on biases and norms) with cosine warm-up. Subclasses
    set ``self.model``, save ``learning_rate``, ``weight_decay`` and ``warmup_steps`` as hyper-parameters and
    define ``forward(input_ids) -> loss``."""

    model: torch.nn.Module

    def __init__(self) -> None:
        super().__init__()
        self._val_losses: list[torch.Tensor] = []
        self._val_blocks = 0

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss: torch.Tensor = self(batch[0])
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.add_val_loss(self(batch[0]), len(batch[0]))

    def add_val_loss(self, loss: torch.Tensor, blocks: int) -> None:
        """Count a batch's mean loss over its ``blocks`` blocks into this validation run's mean."""
        self._val_losses.append(loss.detach() * blocks)
        self._val_blocks += blocks

    def on_validation_epoch_start(self) -> None:
        self._val_losses, self._val_blocks = [], 0

    def on_validation_epoch_end(self) -> None:
        # each rank saw its own share of the blocks: add up the sums and the counts of every rank
        total = torch.stack(self._val_losses).sum() if self._val_losses else torch.zeros((), device=self.device)
        sums = torch.stack([total.float(), torch.tensor(float(self._val_blocks), device=total.device)])
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        loss = float(sums[0]) / max(float(sums[1]), 1.0)
        self.log("val_loss", loss, prog_bar=True)
        self.log("val_ppl", math.exp(min(loss, 50.0)), prog_bar=True)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        decay, no_decay = [], []
        for param in self.model.parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.learning_rate, betas=(0.9, 0.95))
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_cosine_schedule_with_warmup(optimizer, min(hp.warmup_steps, total // 2), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class CausalLM(NextTokenLM):
    """A GPT-2 from a preset's config, or an HF causal LM to fine-tune; its loss is the HF model's own."""

    def __init__(self, gpt2: dict[str, Any] | None = None, base_model: str | None = None,
                 learning_rate: float = 6e-4, weight_decay: float = 0.1, warmup_steps: int = 100) -> None:
        super().__init__()
        self.save_hyperparameters()
        if base_model is not None:
            self.model = AutoModelForCausalLM.from_pretrained(base_model)
        elif gpt2 is not None:
            self.model = GPT2LMHeadModel(GPT2Config(**gpt2))
        else:
            raise ValueError("give a GPT-2 config or a base model")

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = self.model(input_ids=input_ids, labels=input_ids).loss
        return loss
