"""`--trainer.ema_decay`: the weights validated, checkpointed, tested and exported are the moving average."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer

from tests.conftest import LABELS
from training.classification.classifier import TextClassifier
from training.classification.data import TextClassificationDataModule
from training.config import DataConfig, TrainerConfig
from training.trainer import fit_and_test


def test_an_ema_fit_tests_and_exports_the_average(tiny_base: Path, tiny_data: Path, tmp_path: Path) -> None:
    datamodule = TextClassificationDataModule(DataConfig(data_dir=str(tiny_data), batch_size=16, eval_batch_size=64),
                                              AutoTokenizer.from_pretrained(tiny_base), 32, seed=3)
    module = TextClassifier(str(tiny_base), LABELS, learning_rate=3e-3)
    cfg = TrainerConfig(max_steps=12, max_epochs=1, accelerator="cpu", val_check_interval=6, ema_decay=0.8,
                        checkpoint_every_n_steps=None, patience=10)
    fitted = fit_and_test(module, datamodule, cfg, tmp_path / "run", resume=False)
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    average, trained = best["state_dict"], best["current_model_state"]
    assert int(best["averaging_state"]["n_averaged"]) > 1
    changed = [k for k in average if average[k].is_floating_point() and not torch.equal(average[k], trained[k])]
    assert changed, "the checkpoint's weights are the trained ones, not their average"
    assert fitted.module is module and fitted.metrics["global_step"] == 12
    exported = module.state_dict()
    assert all(torch.equal(exported[k], average[k]) for k in average), "the exported weights are not the average"
