"""`python -m training lm`: train (or fine-tune) a causal LM on a folder of .txt files (or a TSV column of sentences)
and export it."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from training.config import LMDataConfig, LMModelConfig, OutputConfig, TrainerConfig
from training.distributed import written_by_rank_zero
from training.export.text_generation import export_lm
from training.language_model.causal_lm import CausalLM, gpt2_config
from training.language_model.corpus import (
    CorpusDataModule,
    read_corpus,
    read_tsv_column,
    split_documents,
    train_tokenizer,
)
from training.plots import plot_training_curves
from training.trainer import Fitted, best_checkpoint, finish, fit_and_keep_last, make_trainer

log = logging.getLogger(__name__)


def lm(data: LMDataConfig | None = None, model: LMModelConfig | None = None,
       trainer: TrainerConfig | None = None, output: OutputConfig | None = None, seed: int = 42) -> Path:
    """Train a GPT-2 from scratch or fine-tune an HF causal LM on a .txt corpus (or the sentences of one TSV column),
    export it to models/<name>.

    From scratch, a byte-level BPE is trained on the corpus first. Reports held-out perplexity; the artifact's task
    is text-generation; returns its folder.

    Args:
        data: corpus folder of .txt files or a TSV file and its text column (held-out rows from a second TSV or a
            fraction), character cap, held-out fraction, block size, BPE vocab, batching.
        model: base model (HF folder/hub id) or GPT-2 preset, context length, optimiser, ONNX export.
        trainer: Lightning settings: steps, accelerator, devices, strategy, precision, validation interval.
        output: artifact name, models and runs folders, resume.
        seed: global seed (also orders the documents for the cap and the split).
    """
    data, model = data or LMDataConfig(), model or LMModelConfig()
    trainer, output = trainer or TrainerConfig(), output or OutputConfig(name="gpt2-corpus")
    L.seed_everything(seed, workers=True)
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    if data.block_size > model.context_length:
        raise ValueError(f"block_size {data.block_size} exceeds context_length {model.context_length}")
    run_dir = Path(output.runs_dir) / output.name
    run_dir.mkdir(parents=True, exist_ok=True)
    docs, train_texts, val_texts = _documents(data, seed)
    log.info("[1/3] %d documents (%d characters) from %s; %d held out", len(docs),
             sum(len(t) for _, t in docs), data.tsv_file or data.corpus_dir, len(val_texts))
    tokenizer = _tokenizer(model, data, train_texts, run_dir)
    datamodule = CorpusDataModule(data, tokenizer, train_texts, val_texts, seed=seed)
    gpt2 = None if model.base_model else gpt2_config(model.preset, len(tokenizer), model.context_length,
                                                     int(tokenizer.eos_token_id))
    module = CausalLM(gpt2, model.base_model, model.learning_rate, model.weight_decay, model.warmup_steps)
    log.info("[2/3] training %s (%.1fM parameters)", model.base_model or f"GPT-2 {model.preset}",
             sum(p.numel() for p in module.parameters()) / 1e6)
    fitted = fit_and_evaluate(module, datamodule, trainer, run_dir, output.resume)
    if fitted.module is None:  # not global rank 0: rank 0 exports
        return Path(output.models_dir) / output.name
    metrics = fitted.metrics
    log.info("held-out perplexity %.2f (val loss %.4f)", metrics["perplexity"], metrics["val_loss"])
    curve = plot_training_curves(run_dir)
    log.info("[3/3] exporting to %s/%s", output.models_dir, output.name)
    config = {"data": dataclasses.asdict(data), "model": dataclasses.asdict(model),
              "trainer": dataclasses.asdict(trainer), "output": dataclasses.asdict(output), "seed": seed,
              "distributed": fitted.distributed}
    return export_lm(fitted.module.model, tokenizer, Path(output.models_dir), output.name,
                     base_model=model.base_model or f"gpt2-{model.preset} (from scratch)",
                     context_length=model.context_length, metrics=metrics, training=config, onnx=model.onnx,
                     curve=curve)


def _documents(data: LMDataConfig, seed: int) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(training documents, training texts, held-out texts): the .txt folder, or the TSV column (one sentence a
    document) with its held-out part from ``val_tsv_file`` when given, else the last ``val_fraction``."""
    if data.tsv_file is None:
        docs = read_corpus(Path(data.corpus_dir), data.pattern, data.max_chars, seed)
        return docs, *split_documents(docs, data.val_fraction)
    docs = read_tsv_column(Path(data.tsv_file), data.text_column, data.max_chars, seed)
    if data.val_tsv_file is None:
        return docs, *split_documents(docs, data.val_fraction)
    held_out = read_tsv_column(Path(data.val_tsv_file), data.text_column, seed=seed)
    return docs, [text for _, text in docs], [text for _, text in held_out]


def _tokenizer(model: LMModelConfig, data: LMDataConfig, texts: list[str], run_dir: Path) -> Any:
    """The base model's tokenizer, or a BPE trained on the training documents (kept in the run for resume)."""
    if model.base_model:
        tokenizer = AutoTokenizer.from_pretrained(model.base_model)
        if tokenizer.eos_token_id is None:
            raise ValueError(f"{model.base_model}: the tokenizer has no eos token")
        return tokenizer
    saved = run_dir / "tokenizer"

    def train(folder: Path) -> None:
        trained = train_tokenizer(texts, data.vocab_size, model.context_length)
        trained.save_pretrained(folder)
        log.info("trained a byte-level BPE tokenizer of %d tokens", len(trained))

    # rank 0 trains it once; every rank then reads that one (identical ids across processes)
    return PreTrainedTokenizerFast.from_pretrained(written_by_rank_zero(saved, train))


def fit_and_evaluate(module: CausalLM, datamodule: CorpusDataModule, cfg: TrainerConfig, run_dir: Path,
                     resume: bool) -> Fitted:
    """Fit (resuming when asked), keep last.ckpt, measure held-out perplexity with the best weights."""
    fitter = make_trainer(cfg, run_dir, monitor="val_loss", mode="min")
    fit_and_keep_last(fitter, module, datamodule, run_dir, resume)
    result = fitter.validate(module, datamodule=datamodule, ckpt_path=best_checkpoint(fitter) or None,
                             verbose=False, weights_only=True)[0]
    loss = float(result["val_loss"])
    metrics = {"perplexity": math.exp(loss), "val_loss": loss, "split_sizes": datamodule.split_sizes(),
               "global_step": int(fitter.global_step)}
    return finish(fitter, module, cfg, run_dir, metrics)
