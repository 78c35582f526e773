"""The Lightning Trainer every verb fits with: checkpoints (best and resumable last), early stopping, logs; the
fit-then-test of a classifier and the test metrics it leaves in the run folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from training.classification.data import TextClassificationDataModule
from training.config import TrainerConfig

log = logging.getLogger(__name__)

TEST_METRICS = "test_metrics.json"
"""Written into the run folder by every fit: the metrics the artifact's manifest records."""


def make_trainer(cfg: TrainerConfig, run_dir: Path, monitor: str = "val_acc", mode: str = "max") -> L.Trainer:
    """Trainer with best/last checkpoints, early stopping and CSV (+TensorBoard when installed) logs.

    best.ckpt is kept by ``monitor``; last.ckpt (written atomically) every ``cfg.checkpoint_every_n_steps``
    steps, so that a killed run resumes from within its epoch.
    """
    checkpoints = run_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=checkpoints, filename="best", monitor=monitor, mode=mode, save_top_k=1)
    last = ModelCheckpoint(dirpath=checkpoints, save_top_k=0, save_last=True, enable_version_counter=False,
                           every_n_train_steps=cfg.checkpoint_every_n_steps)
    callbacks = [best, last, EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience),
                 LearningRateMonitor(logging_interval="step")]
    loggers: list[Logger] = [CSVLogger(save_dir=run_dir, name="logs")]
    try:
        import tensorboard  # noqa: F401  (optional: TensorBoard logs only when it is installed)

        loggers.append(TensorBoardLogger(save_dir=run_dir, name="tensorboard"))
    except ImportError:
        pass
    return L.Trainer(
        max_epochs=cfg.max_epochs, max_steps=cfg.max_steps, accelerator=cfg.accelerator, devices=cfg.devices,
        num_nodes=cfg.num_nodes, strategy=cfg.strategy, precision=cfg.precision,  # type: ignore[arg-type]
        accumulate_grad_batches=cfg.accumulate_grad_batches, val_check_interval=cfg.val_check_interval,
        limit_val_batches=cfg.limit_val_batches, log_every_n_steps=cfg.log_every_n_steps,
        gradient_clip_val=cfg.gradient_clip_val, callbacks=callbacks, logger=loggers, default_root_dir=run_dir,
        deterministic=False,
    )


def resume_path(run_dir: Path, resume: bool) -> str | None:
    """run_dir/checkpoints/last.ckpt when resuming is asked for and it exists, else None (a fresh fit)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume and last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    return None


def best_checkpoint(trainer: L.Trainer) -> str:
    """Path of the best checkpoint the fit kept ("" when none was written)."""
    callback = trainer.checkpoint_callback
    return str(callback.best_model_path) if isinstance(callback, ModelCheckpoint) else ""


def read_run_metrics(run_dir: Path) -> dict[str, Any]:
    """The test metrics a fit left in ``run_dir`` ({} when there are none)."""
    path = run_dir / TEST_METRICS
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def fit_and_test(module: L.LightningModule, datamodule: TextClassificationDataModule, cfg: TrainerConfig,
                 run_dir: Path, resume: bool) -> dict[str, Any]:
    """Fit a classifier (resuming when asked), keep the final state as last.ckpt, test the best checkpoint.

    Returns the test metrics, also written to run_dir/test_metrics.json.
    """
    fitter = make_trainer(cfg, run_dir)
    fitter.fit(module, datamodule=datamodule, ckpt_path=resume_path(run_dir, resume), weights_only=True)
    fitter.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # the final state, for a later resume
    log.info("evaluating the best checkpoint on the test split")
    results = fitter.test(module, datamodule=datamodule, ckpt_path=best_checkpoint(fitter) or None, verbose=False,
                          weights_only=True)[0]
    metrics = {"test_accuracy": float(results["test_acc"]), "test_f1": float(results["test_f1"]),
               "test_loss": float(results["test_loss"]), "split_sizes": datamodule.split_sizes(),
               "global_step": int(fitter.global_step)}
    (run_dir / TEST_METRICS).write_text(json.dumps(metrics, indent=2))
    return metrics
