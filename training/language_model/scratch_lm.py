"""The from-scratch Transformer of transformer/ in Lightning. Its loss and logs are `CausalLM`'s (next-token
cross-entropy; train_loss, val_loss, val_ppl), so both read the same on the same data; a Mixture of Experts adds
its load-balancing loss (weighted by ``aux_loss_weight``) to the training loss and logs train_aux_loss,
train_dropped (the fraction of (token, expert) assignments over capacity) and, per validation, each expert's
share of the assignments (val_expert_load_<e>, averaged over layers; val_expert_load_max, the largest share in
any layer)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from training.language_model.causal_lm import NextTokenLM
from transformer.model import TransformerConfig, TransformerLM


def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token t + 1 from positions <= t (as transformers' causal LMs compute it)."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))


class ScratchLM(NextTokenLM):
    model: TransformerLM

    def __init__(self, config: dict[str, Any], learning_rate: float = 6e-4, weight_decay: float = 0.1,
                 warmup_steps: int = 100, aux_loss_weight: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = TransformerLM(TransformerConfig(**config))
        self._val_load: list[torch.Tensor] = []
        self._val_tokens = 0

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return next_token_loss(self.model(input_ids).logits, input_ids)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        ids = batch[0]
        out = self.model(ids)
        loss = next_token_loss(out.logits, ids)
        self.log("train_loss", loss, prog_bar=True)
        if not out.routing:
            return loss
        aux = torch.stack([r.aux_loss for r in out.routing]).mean()
        assignments = len(out.routing) * ids.numel() * self.model.config.top_k
        self.log("train_aux_loss", aux)
        self.log("train_dropped", torch.stack([r.dropped for r in out.routing]).sum().float() / assignments)
        return loss + float(self.hparams["aux_loss_weight"]) * aux

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        ids = batch[0]
        out = self.model(ids)
        self.add_val_loss(next_token_loss(out.logits, ids), len(ids))
        if out.routing:
            self._val_load.append(torch.stack([r.load for r in out.routing]) * ids.numel())  # [layers, experts]
            self._val_tokens += ids.numel()

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._val_load, self._val_tokens = [], 0

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if not self._val_load:
            return
        load, tokens = torch.stack(self._val_load).sum(dim=0), torch.tensor(float(self._val_tokens), device=self.device)
        if self.trainer.world_size > 1:
            load = self.trainer.strategy.reduce(load, reduce_op="sum")
            tokens = self.trainer.strategy.reduce(tokens, reduce_op="sum")
        share = load / tokens  # [layers, experts]: each row sums to 1
        for expert, value in enumerate(share.mean(dim=0).tolist()):
            self.log(f"val_expert_load_{expert}", value)
        self.log("val_expert_load_max", float(share.max()))
