"""The LightningModule: optimiser schedule, dropout really on in training, no decay on norms/biases."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import LABELS
from training.classification.classifier import TextClassifier


def make(tiny_base: Path, **kw) -> TextClassifier:
    module = TextClassifier(str(tiny_base), LABELS, learning_rate=1e-3, warmup_ratio=0.1, **kw)
    module._trainer = SimpleNamespace(estimated_stepping_batches=100)  # type: ignore[assignment]
    return module


def test_linear_warmup_then_decay_to_zero(tiny_base: Path) -> None:
    module = make(tiny_base)
    conf = module.configure_optimizers()
    optimizer, scheduler = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0
    assert abs(max(lrs) - 1e-3) < 1e-9 and lrs.index(max(lrs)) == 10
    assert all(a <= b for a, b in itertools.pairwise(lrs[:11]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[-1] < 2e-5


def test_weight_decay_skips_biases_and_layernorm(tiny_base: Path) -> None:
    groups = make(tiny_base).configure_optimizers()["optimizer"].param_groups
    decay, no_decay = groups
    assert decay["weight_decay"] > 0 and no_decay["weight_decay"] == 0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])


def test_dropout_active_in_training_and_off_in_eval(tiny_base: Path) -> None:
    module = make(tiny_base)
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    mask = torch.ones_like(ids)
    assert module.model.training, "from_pretrained returns eval mode; the module must switch to train"
    assert not torch.equal(module(ids, mask), module(ids, mask))
    module.eval()
    assert torch.equal(module(ids, mask), module(ids, mask))


def test_frozen_embeddings_are_left_out_of_the_optimiser(tiny_base: Path) -> None:
    module = make(tiny_base, freeze_embeddings=True)
    embedding = module.model.get_input_embeddings().weight
    params = [p for g in module.configure_optimizers()["optimizer"].param_groups for p in g["params"]]
    assert not embedding.requires_grad
    assert all(p is not embedding for p in params)


def test_frozen_layers_get_no_gradient_and_the_layers_above_do(tiny_base: Path) -> None:
    module = make(tiny_base, frozen_layers=1)
    base = module.model.base_model
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    module(ids, torch.ones_like(ids)).sum().backward()
    frozen = [*base.embeddings.parameters(), *base.encoder.layer[0].parameters()]
    assert all(not p.requires_grad and p.grad is None for p in frozen)
    assert all(p.grad is not None for p in base.encoder.layer[1].parameters())
    params = {id(p) for g in module.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    assert params.isdisjoint(id(p) for p in frozen) and len(params) > 0


def test_freezing_more_layers_than_the_encoder_has_is_refused(tiny_base: Path) -> None:
    layers = len(make(tiny_base).model.base_model.encoder.layer)
    with pytest.raises(ValueError, match=f"cannot freeze {layers + 1} layers.*{layers} encoder layers"):
        make(tiny_base, frozen_layers=layers + 1)


def test_fused_optimiser_on_cpu_clips_gradients_itself(tiny_base: Path) -> None:
    module = make(tiny_base)
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"], "on CPU the optimiser runs one fused kernel"
    for param in module.parameters():
        param.grad = torch.full_like(param, 3.0)
    module.configure_gradient_clipping(optimizer, 0.5, "norm")
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert abs(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item() - 0.5) < 1e-4
    module.configure_gradient_clipping(optimizer, 1e-3, "value")
    assert max(g.abs().max().item() for g in grads) <= 1e-3 + 1e-9


def test_bf16_mixed_fit_with_clipping_runs_the_fused_optimiser(tiny_base: Path) -> None:
    import lightning as L

    module = TextClassifier(str(tiny_base), LABELS, learning_rate=1e-3)
    ids = torch.randint(4, 8, (8, 6))
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.arange(8) % 2}] * 4
    before = [p.detach().clone() for p in module.parameters()]
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", gradient_clip_val=1.0, max_steps=4, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    trainer.fit(module, train_dataloaders=loader)  # Lightning's own clipping refuses a fused optimiser here
    assert trainer.global_step == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_layer_wise_lr_decay_gives_each_layer_its_rate(tiny_base: Path) -> None:
    module = make(tiny_base, layer_lr_decay=0.5)
    total = module.model.config.num_hidden_layers
    optimizer = module.configure_optimizers()["optimizer"]
    rate = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(module.model.named_parameters())
    head = [p for n, p in named.items() if n.startswith("classifier.")]
    top = [p for n, p in named.items() if f".layer.{total - 1}." in n]
    bottom = [p for n, p in named.items() if ".layer.0." in n]
    embeddings = [p for n, p in named.items() if ".embeddings." in n]
    assert head and top and bottom and embeddings
    assert {rate[id(p)] for p in head} == {1e-3}
    assert {rate[id(p)] for p in top} == {1e-3 * 0.5}
    assert {rate[id(p)] for p in bottom} == {1e-3 * 0.5 ** total}
    assert {rate[id(p)] for p in embeddings} == {1e-3 * 0.5 ** (total + 1)}
    assert len(rate) == sum(1 for p in module.parameters() if p.requires_grad), "a parameter was left out"
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.01}


def training_loss(module: TextClassifier, batch: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
    module.log = lambda *a, **k: None  # type: ignore[method-assign]  # no trainer to log to
    torch.manual_seed(seed)
    return module.training_step(batch, 0)


def test_label_smoothing_and_r_drop_make_the_training_loss(tiny_base: Path) -> None:
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]])
    batch = {"input_ids": ids, "attention_mask": (ids > 0).long(), "labels": torch.tensor([0, 1])}
    ce = torch.nn.functional.cross_entropy
    smoothed = make(tiny_base, label_smoothing=0.1)
    torch.manual_seed(3)
    logits = smoothed(batch["input_ids"], batch["attention_mask"])
    assert training_loss(smoothed, batch, 3).item() == pytest.approx(
        ce(logits, batch["labels"], label_smoothing=0.1).item())
    loss, logits = smoothed.eval()._step(batch)  # validation and test: plain cross-entropy
    assert loss.item() == pytest.approx(ce(logits, batch["labels"]).item())
    assert loss.item() != pytest.approx(ce(logits, batch["labels"], label_smoothing=0.1).item())

    r_drop = make(tiny_base, r_drop=2.0)
    torch.manual_seed(4)
    first, second = (r_drop(batch["input_ids"], batch["attention_mask"]) for _ in range(2))
    assert not torch.equal(first, second), "two dropout masks"
    p, q = first.log_softmax(-1), second.log_softmax(-1)
    kl = ((p.exp() * (p - q)).sum(-1).mean() + (q.exp() * (q - p)).sum(-1).mean()) / 2
    expected = (ce(first, batch["labels"]) + ce(second, batch["labels"])) / 2 + 2.0 * kl
    assert kl.item() > 0
    assert training_loss(r_drop, batch, 4).item() == pytest.approx(expected.item(), rel=1e-5)
    r_drop.eval()  # no dropout: both passes agree, the KL term vanishes
    assert training_loss(r_drop, batch, 5).item() == pytest.approx(r_drop._step(batch)[0].item(), rel=1e-6)


@pytest.mark.parametrize("option", [{"label_smoothing": 1.0}, {"layer_lr_decay": 0.0}, {"layer_lr_decay": 1.5},
                                    {"r_drop": -1.0}])
def test_out_of_range_regularisation_is_refused(tiny_base: Path, option: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="label_smoothing"):
        make(tiny_base, **option)
