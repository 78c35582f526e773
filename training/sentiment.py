"""`python -m training sentiment`: fine-tune a sentiment classifier, evaluate on test, export the artifact."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from transformers import AutoTokenizer

from training.classifier import SentimentClassifier
from training.config import (
    DataConfig,
    ModelConfig,
    OutputConfig,
    SentimentConfig,
    TrainerConfig,
    default_base_model,
)
from training.data import TextClassificationDataModule
from training.export import export_classifier
from training.plots import plot_training_curves

log = logging.getLogger(__name__)
TEST_METRICS = "test_metrics.json"


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
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

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
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume and last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    return None


def read_run_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / TEST_METRICS
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def fit_and_test(module: L.LightningModule, datamodule: TextClassificationDataModule, cfg: TrainerConfig,
                 run_dir: Path, resume: bool) -> dict[str, Any]:
    """Fit (resuming when asked), keep the final state as last.ckpt, test the best checkpoint.

    Returns the test metrics, also written to run_dir/test_metrics.json.
    """
    fitter = make_trainer(cfg, run_dir)
    fitter.fit(module, datamodule=datamodule, ckpt_path=resume_path(run_dir, resume), weights_only=True)
    fitter.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # the final state, for a later resume
    log.info("evaluating the best checkpoint on the test split")
    best = fitter.checkpoint_callback.best_model_path if fitter.checkpoint_callback else ""  # type: ignore[union-attr]
    results = fitter.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False,
                          weights_only=True)[0]
    metrics = {"test_accuracy": float(results["test_acc"]), "test_f1": float(results["test_f1"]),
               "test_loss": float(results["test_loss"]), "split_sizes": datamodule.split_sizes(),
               "global_step": int(fitter.global_step)}
    (run_dir / TEST_METRICS).write_text(json.dumps(metrics, indent=2))
    return metrics


def sentiment(data: DataConfig | None = None, model: ModelConfig | None = None,
              trainer: TrainerConfig | None = None, output: OutputConfig | None = None, seed: int = 42) -> Path:
    """Fine-tune a sentiment classifier, test it and export it to models/<name>; returns that folder.

    Args:
        data: labelled files (or an HF dataset id) and batching.
        model: base model (HF folder or hub id; default the MiniLM package) and optimiser settings.
        trainer: Lightning settings: epochs/steps, accelerator, devices, num_nodes, strategy, precision.
        output: artifact name, models and runs folders, resume.
        seed: global seed.
    """
    cfg = SentimentConfig(data or DataConfig(), model or ModelConfig(), trainer or TrainerConfig(),
                          output or OutputConfig(), seed)
    return run(cfg)


def run(cfg: SentimentConfig) -> Path:
    """The `sentiment` verb on a complete configuration."""
    L.seed_everything(cfg.seed, workers=True)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    base_model = cfg.model.base_model or default_base_model()
    run_dir = Path(cfg.output.runs_dir) / cfg.output.name
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    datamodule = TextClassificationDataModule(cfg.data, tokenizer, cfg.model.max_length, seed=cfg.seed)
    module = SentimentClassifier(base_model, list(cfg.data.labels), cfg.model.learning_rate,
                                 cfg.model.weight_decay, cfg.model.warmup_ratio, cfg.model.freeze_embeddings)
    log.info("[1/2] fine-tuning %s on %s", base_model, cfg.data.hf_dataset or cfg.data.data_dir)
    metrics = fit_and_test(module, datamodule, cfg.trainer, run_dir, cfg.output.resume)
    curve = plot_training_curves(run_dir)
    log.info("test accuracy %.4f, macro F1 %.4f", metrics["test_accuracy"], metrics["test_f1"])
    log.info("[2/2] exporting to %s/%s", cfg.output.models_dir, cfg.output.name)
    return export_classifier(module.model, tokenizer, Path(cfg.output.models_dir), cfg.output.name,
                             labels=list(cfg.data.labels), base_model=base_model,
                             max_length=cfg.model.max_length, metrics=metrics,
                             training=dataclasses.asdict(cfg), curve=curve,
                             int8=cfg.data if cfg.output.int8 else None)
