"""`python -m training sentiment`: fine-tune a text classifier (default: sentiment on SST-2), evaluate on test,
export the text-classification artifact."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import lightning as L
import torch
from transformers import AutoTokenizer

from training.classification.classifier import TextClassifier
from training.classification.data import TextClassificationDataModule
from training.classification.pretrained import resolve_model
from training.config import DataConfig, ModelConfig, OutputConfig, SentimentConfig, TrainerConfig
from training.export.text_classification import export_classifier
from training.plots import plot_training_curves
from training.trainer import fit_and_test

log = logging.getLogger(__name__)


def sentiment(data: DataConfig | None = None, model: ModelConfig | None = None,
              trainer: TrainerConfig | None = None, output: OutputConfig | None = None, seed: int = 42) -> Path:
    """Fine-tune a text classifier (default: SST-2 sentiment), test it, export it to models/<name>.

    The artifact's task is text-classification; returns its folder.

    Args:
        data: labelled files (or an HF dataset id) and batching.
        model: base model (HF folder, hub id, or an offline name: all-minilm-l6-v2, the default, or
            all-mpnet-base-v2) and optimiser settings.
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
    base_model = resolve_model(cfg.model.base_model)
    run_dir = Path(cfg.output.runs_dir) / cfg.output.name
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    datamodule = TextClassificationDataModule(cfg.data, tokenizer, cfg.model.max_length, seed=cfg.seed)
    module = TextClassifier(base_model, list(cfg.data.labels), cfg.model.learning_rate, cfg.model.weight_decay,
                            cfg.model.warmup_ratio, cfg.model.freeze_embeddings, cfg.model.frozen_layers,
                            cfg.model.label_smoothing, cfg.model.layer_lr_decay, cfg.model.r_drop)
    log.info("[1/2] fine-tuning %s on %s", base_model, cfg.data.hf_dataset or cfg.data.data_dir)
    fitted = fit_and_test(module, datamodule, cfg.trainer, run_dir, cfg.output.resume)
    if fitted.module is None:  # not global rank 0: rank 0 exports
        return Path(cfg.output.models_dir) / cfg.output.name
    metrics = fitted.metrics
    curve = plot_training_curves(run_dir)
    log.info("test accuracy %.4f, macro F1 %.4f", metrics["test_accuracy"], metrics["test_f1"])
    log.info("[2/2] exporting to %s/%s", cfg.output.models_dir, cfg.output.name)
    return export_classifier(fitted.module.model, tokenizer, Path(cfg.output.models_dir), cfg.output.name,
                             labels=list(cfg.data.labels), base_model=base_model,
                             max_length=cfg.model.max_length, metrics=metrics,
                             training={**dataclasses.asdict(cfg), "distributed": fitted.distributed}, curve=curve,
                             int8=cfg.data if cfg.output.int8 else None)
