"""The Lightning Trainer every verb fits with: checkpoints (best and resumable last), early stopping, logs; the
fit-then-test of a classifier and the test metrics it leaves in the run folder.

Across processes (``--trainer.strategy ddp|fsdp|deepspeed_stage_2``, ``--trainer.devices``, ``--trainer.num_nodes``;
launched by Lightning itself, torchrun or SLURM's srun) every rank runs the whole verb: the datamodules shard the
batches (`training.distributed`), the metrics are synchronised, and only global rank 0 writes the run's files and
exports the artifact (`Fitted.is_global_zero`), from weights consolidated in one process (`exportable`)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    WeightAveraging,
)
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

from training.classification.data import TextClassificationDataModule
from training.config import TrainerConfig
from training.distributed import RequireShardedBatches, distributed_facts, single_process

log = logging.getLogger(__name__)

TEST_METRICS = "test_metrics.json"
"""Written into the run folder by every fit: the metrics the artifact's manifest records."""
DISTRIBUTED = "distributed.json"
"""Written beside it: world size, strategy, devices (`training.distributed.distributed_facts`)."""


@dataclass
class Fitted:
    """What a fit leaves in this process: the metrics, the distributed facts, whether this process is global rank 0
    (the only one that exports), and the module whose weights to export (rank 0 only, else None)."""

    metrics: dict[str, Any]
    distributed: dict[str, Any]
    is_global_zero: bool
    module: L.LightningModule | None


def make_trainer(cfg: TrainerConfig, run_dir: Path, monitor: str = "val_acc", mode: str = "max") -> L.Trainer:
    """Trainer with best/last checkpoints, early stopping and CSV (+TensorBoard when installed) logs.

    best.ckpt is kept by ``monitor``; last.ckpt (written atomically) every ``cfg.checkpoint_every_n_steps``
    steps, so that a killed run resumes from within its epoch. With ``cfg.ema_decay`` the weights validated,
    checkpointed and exported are an exponential moving average of the trained ones.
    """
    checkpoints = run_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=checkpoints, filename="best", monitor=monitor, mode=mode, save_top_k=1)
    last = ModelCheckpoint(dirpath=checkpoints, save_top_k=0, save_last=True, enable_version_counter=False,
                           every_n_train_steps=cfg.checkpoint_every_n_steps)
    callbacks = [best, last, EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience),
                 LearningRateMonitor(logging_interval="step"), RequireShardedBatches()]
    if cfg.ema_decay is not None:  # validation, checkpoints and the final weights use the average
        callbacks.append(EMAWeightAveraging(decay=cfg.ema_decay))
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
        deterministic=False, use_distributed_sampler=False,  # the datamodules shard their own batches
    )


def fit_and_keep_last(fitter: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule,
                      run_dir: Path, resume: bool) -> float:
    """Fit (resuming from last.ckpt when asked), keep the final state as last.ckpt (for a later resume); the fit's
    wall seconds in this process (after a resume: only the resumed part).

    Weight averaging ends here: best.ckpt holds the average as its weights, and the averaging callback, if still
    attached, would load the trained weights beside them instead when the best checkpoint is then tested."""
    start, checkpoint = time.perf_counter(), resume_path(run_dir, resume)
    fitter.fit(module, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    seconds = time.perf_counter() - start
    if checkpoint is not None:
        check_resumed(fitter, checkpoint)
    fitter.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    fitter.callbacks = [c for c in fitter.callbacks if not isinstance(c, WeightAveraging)]
    return seconds


def resume_path(run_dir: Path, resume: bool) -> str | None:
    """run_dir/checkpoints/last.ckpt when resuming is asked for and it exists, else None (a fresh fit)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume and last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    return None


class StaleRun(RuntimeError):
    """A resumed fit could not continue the run in runs/<name>/: its result would not be what was asked for."""


def check_resumed(fitter: L.Trainer, checkpoint: str) -> None:
    """Raise `StaleRun` when resuming from ``checkpoint`` trained nothing although this fit's budget wants more
    steps and no early stop ended the run: Lightning counts an epoch that ``max_steps`` cut short as finished, so
    a run stopped at, say, 20 steps and resumed with ``max_epochs: 1`` would otherwise be tested and exported as
    it is. Resuming a finished run of the same budget (re-exporting it) passes."""
    resumed_at = int(torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    budget = int(fitter.estimated_stepping_batches)
    early = fitter.early_stopping_callback
    stopped_early = early is not None and early.stopped_epoch > 0
    if fitter.global_step == resumed_at < budget and not stopped_early:
        raise StaleRun(f"{checkpoint} stopped at step {resumed_at} and resuming it trained no step of this fit's "
                       f"{budget} (Lightning counts its last, cut-short epoch as done): it is a run of another "
                       "budget. Start over with --output.resume false (its checkpoints are overwritten), pick "
                       "another --output.name, or give it more epochs (--trainer.max_epochs).")


def best_checkpoint(trainer: L.Trainer) -> str:
    """Path of the best checkpoint the fit kept ("" when none was written)."""
    callback = trainer.checkpoint_callback
    return str(callback.best_model_path) if isinstance(callback, ModelCheckpoint) else ""


def read_run_metrics(run_dir: Path) -> dict[str, Any]:
    """The test metrics a fit left in ``run_dir`` ({} when there are none)."""
    path = run_dir / TEST_METRICS
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def read_run_distributed(run_dir: Path) -> dict[str, Any]:
    """The distributed facts a fit left in ``run_dir`` (a single-process note when there are none)."""
    path = run_dir / DISTRIBUTED
    return dict(json.loads(path.read_text())) if path.is_file() else single_process("no distributed.json in the run")


def exportable(module: L.LightningModule, trainer: L.Trainer, checkpoint: str) -> L.LightningModule:
    """The module whose weights rank 0 exports: the one in memory (single process, ddp: every rank holds every
    weight), or, when the strategy shards or recasts them (fsdp, deepspeed), a fresh copy loaded from the
    ``checkpoint`` the fit consolidated (fsdp's full state dict; deepspeed's ZeRO folder converted to fp32)."""
    name = type(trainer.strategy).__name__
    if "FSDP" not in name and "DeepSpeed" not in name:
        return module
    path = Path(checkpoint)
    if path.is_dir():
        single = path.with_name(path.name + ".fp32.ckpt")
        convert_zero_checkpoint_to_fp32_state_dict(str(path), str(single))
        path = single
    log.info("%s sharded the weights: exporting them from %s", name, path)
    # our own run's checkpoint (hyper-parameters included), written by this fit
    return type(module).load_from_checkpoint(path, map_location="cpu", weights_only=False)


def finish(fitter: L.Trainer, module: L.LightningModule, cfg: TrainerConfig, run_dir: Path,
           metrics: dict[str, Any]) -> Fitted:
    """Rank 0 writes the metrics and the distributed facts into the run folder; every rank gets its `Fitted`."""
    facts = distributed_facts(fitter, cfg.strategy)
    if not fitter.is_global_zero:
        log.info("rank %d of %d: training done; rank 0 exports the artifact", fitter.global_rank, fitter.world_size)
        return Fitted(metrics, facts, False, None)
    (run_dir / TEST_METRICS).write_text(json.dumps(metrics, indent=2))
    (run_dir / DISTRIBUTED).write_text(json.dumps(facts, indent=2))
    checkpoint = best_checkpoint(fitter) or str(run_dir / "checkpoints" / "last.ckpt")
    return Fitted(metrics, facts, True, exportable(module, fitter, checkpoint))


def fit_and_test(module: L.LightningModule, datamodule: TextClassificationDataModule, cfg: TrainerConfig,
                 run_dir: Path, resume: bool) -> Fitted:
    """Fit a classifier (resuming when asked), keep the final state as last.ckpt, test the best checkpoint.

    The test metrics (and the fit's wall seconds) are also written to run_dir/test_metrics.json (by global rank 0).
    """
    fitter = make_trainer(cfg, run_dir)
    fit_seconds = fit_and_keep_last(fitter, module, datamodule, run_dir, resume)
    log.info("evaluating the best checkpoint on the test split")
    results = fitter.test(module, datamodule=datamodule, ckpt_path=best_checkpoint(fitter) or None, verbose=False,
                          weights_only=True)[0]
    metrics = {"test_accuracy": float(results["test_acc"]), "test_f1": float(results["test_f1"]),
               "test_loss": float(results["test_loss"]), "split_sizes": datamodule.split_sizes(),
               "global_step": int(fitter.global_step), "fit_seconds": round(fit_seconds, 1)}
    return finish(fitter, module, cfg, run_dir, metrics)
