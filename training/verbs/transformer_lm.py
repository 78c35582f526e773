"""`python -m training transformer_lm`: train the from-scratch Transformer of transformer/ (dense, or a Mixture of
Experts) on a folder of .txt files, as `lm` trains GPT-2 (same documents, split, BPE and blocks), and export it."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from transformers import PreTrainedTokenizerFast

from training.config import LMDataConfig, OutputConfig, TrainerConfig, TransformerModelConfig
from training.distributed import written_by_rank_zero
from training.export.transformer_decoder import export_transformer_lm
from training.language_model.corpus import CorpusDataModule, read_corpus, split_documents, train_tokenizer
from training.language_model.scratch_lm import ScratchLM
from training.plots import plot_training_curves
from training.trainer import Fitted, best_checkpoint, finish, fit_and_keep_last, make_trainer
from transformer.model import TransformerConfig

log = logging.getLogger(__name__)


def transformer_lm(data: LMDataConfig | None = None, model: TransformerModelConfig | None = None,
                   trainer: TrainerConfig | None = None, output: OutputConfig | None = None, seed: int = 42) -> Path:
    """Train the Transformer built from its parts (transformer/) on a .txt corpus and export it to models/<name>.

    A byte-level BPE is trained on the training documents first (the one `lm` trains on the same data). Reports
    held-out perplexity, and for a Mixture of Experts each expert's share of the assignments; the artifact's task
    is text-generation; returns its folder.

    Args:
        data: corpus folder of .txt files, character cap, held-out fraction, block size, BPE vocab, batching.
        model: layers, heads, widths, position encoding, experts (0 = dense), top-k, capacity, optimiser, ONNX.
        trainer: Lightning settings: steps, accelerator, devices, strategy, precision, validation interval.
        output: artifact name, models and runs folders, resume.
        seed: global seed (also orders the documents for the cap and the split).
    """
    data, model = data or LMDataConfig(), model or TransformerModelConfig()
    trainer, output = trainer or TrainerConfig(), output or OutputConfig(name="transformer-lm")
    L.seed_everything(seed, workers=True)
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    if data.block_size > model.context_length:
        raise ValueError(f"block_size {data.block_size} exceeds context_length {model.context_length}")
    run_dir = Path(output.runs_dir) / output.name
    run_dir.mkdir(parents=True, exist_ok=True)
    docs = read_corpus(Path(data.corpus_dir), data.pattern, data.max_chars, seed)
    train_texts, val_texts = split_documents(docs, data.val_fraction)
    log.info("[1/3] %d documents (%d characters) from %s; %d held out", len(docs),
             sum(len(t) for _, t in docs), data.corpus_dir, len(val_texts))
    tokenizer = _tokenizer(train_texts, data.vocab_size, model.context_length, run_dir)
    datamodule = CorpusDataModule(data, tokenizer, train_texts, val_texts, seed=seed)
    config = model_config(model, len(tokenizer))
    module = ScratchLM(dataclasses.asdict(config), model.learning_rate, model.weight_decay, model.warmup_steps,
                       model.aux_loss_weight)
    counts = module.model.parameter_counts()
    log.info("[2/3] training a %s Transformer (%.2fM parameters, %.2fM active per token)",
             f"{config.n_experts}-expert top-{config.top_k} MoE" if config.n_experts else "dense",
             counts["total"] / 1e6, counts["active"] / 1e6)
    fitted = _fit_and_evaluate(module, datamodule, trainer, run_dir, output.resume)
    if fitted.module is None:  # not global rank 0: rank 0 exports
        return Path(output.models_dir) / output.name
    log.info("held-out perplexity %.2f (val loss %.4f)", fitted.metrics["perplexity"], fitted.metrics["val_loss"])
    curve = plot_training_curves(run_dir)
    log.info("[3/3] exporting to %s/%s", output.models_dir, output.name)
    settings = {"data": dataclasses.asdict(data), "model": dataclasses.asdict(model),
                "trainer": dataclasses.asdict(trainer), "output": dataclasses.asdict(output), "seed": seed,
                "distributed": fitted.distributed}
    assert isinstance(fitted.module, ScratchLM)
    return export_transformer_lm(fitted.module.model, tokenizer, Path(output.models_dir), output.name,
                                 metrics=fitted.metrics, training=settings, onnx=model.onnx, curve=curve)


def model_config(model: TransformerModelConfig, vocab_size: int) -> TransformerConfig:
    fields = {f.name for f in dataclasses.fields(TransformerConfig)}
    return TransformerConfig(vocab_size=vocab_size, **{k: v for k, v in dataclasses.asdict(model).items()
                                                        if k in fields})


def _tokenizer(texts: list[str], vocab_size: int, context_length: int, run_dir: Path) -> Any:
    """A BPE trained on the training documents by rank 0 (kept in the run for resume), read by every rank."""
    def train(folder: Path) -> None:
        trained = train_tokenizer(texts, vocab_size, context_length)
        trained.save_pretrained(folder)
        log.info("trained a byte-level BPE tokenizer of %d tokens", len(trained))

    return PreTrainedTokenizerFast.from_pretrained(written_by_rank_zero(run_dir / "tokenizer", train))


def _fit_and_evaluate(module: ScratchLM, datamodule: CorpusDataModule, cfg: TrainerConfig, run_dir: Path,
                      resume: bool) -> Fitted:
    """Fit (resuming when asked), keep last.ckpt, measure held-out perplexity (and the experts' shares of the
    assignments) with the best weights."""
    fitter = make_trainer(cfg, run_dir, monitor="val_loss", mode="min")
    fit_and_keep_last(fitter, module, datamodule, run_dir, resume)
    result = fitter.validate(module, datamodule=datamodule, ckpt_path=best_checkpoint(fitter) or None,
                             verbose=False, weights_only=True)[0]
    loss = float(result["val_loss"])
    metrics = {"perplexity": math.exp(loss), "val_loss": loss, "split_sizes": datamodule.split_sizes(),
               "global_step": int(fitter.global_step),
               **{key: float(value) for key, value in result.items() if key.startswith("val_expert_load")}}
    return finish(fitter, module, cfg, run_dir, metrics)
