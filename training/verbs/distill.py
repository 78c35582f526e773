"""`python -m training distill`: distil a text-classification artifact (the teacher) into a smaller student, test
both, export the student."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from tqdm import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from contract import TEXT_CLASSIFICATION, Artifact, open_artifact
from training.classification.data import EncodedDataset, TextClassificationDataModule, pad_collate
from training.classification.knowledge_distillation import DistillationModule, default_layers, make_student
from training.config import DataConfig, ModelConfig, OutputConfig, SentimentConfig, TrainerConfig
from training.distributed import launch_rank
from training.export.text_classification import export_classifier
from training.plots import plot_training_curves
from training.trainer import fit_and_test

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    teacher: str = "models/sentiment-minilm"
    """Teacher artifact folder (models/<name>); labels and max_length come from its manifest."""
    student: str | None = None
    """HF folder or hub id of the student; None = the teacher with only student_layers kept."""
    student_layers: list[int] | None = None
    """Teacher layers kept by the derived student; None = every other one from the first (6 -> 0,2,4)."""
    alpha: float = 0.5
    """Weight of the soft-target KL term; 1 - alpha weighs cross-entropy on the labels."""
    temperature: float = 2.0
    cache_teacher_logits: bool = True
    """Run the teacher once over the training split before training instead of at every step."""


@dataclass
class DistillOutputConfig(OutputConfig):
    name: str = "sentiment-minilm-student"


@dataclass
class DistillRunConfig(SentimentConfig):
    output: OutputConfig = field(default_factory=DistillOutputConfig)
    distillation: DistillConfig = field(default_factory=DistillConfig)


def distill(data: DataConfig | None = None, model: ModelConfig | None = None,
            trainer: TrainerConfig | None = None, output: DistillOutputConfig | None = None,
            distillation: DistillConfig | None = None, seed: int = 42) -> Path:
    """Distil a trained text-classification artifact into a smaller student, test both, export the student.

    Loss: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels).

    Args:
        data: labelled files (or an HF dataset id) and batching; labels must match the teacher's.
        model: the student's optimiser settings (base_model must stay unset: use distillation.student;
            max_length is the teacher's).
        trainer: Lightning settings: epochs/steps, accelerator, devices, num_nodes, strategy, precision.
        output: student artifact name (default sentiment-minilm-student), models and runs folders, resume.
        distillation: teacher artifact, student, kept layers, alpha, temperature, logit caching.
        seed: global seed.
    """
    return run(DistillRunConfig(data=data or DataConfig(), model=model or ModelConfig(),
                                trainer=trainer or TrainerConfig(), output=output or DistillOutputConfig(),
                                seed=seed, distillation=distillation or DistillConfig()))


def load_teacher(path: Path) -> tuple[nn.Module, Any, Artifact]:
    """The frozen eval-mode HF model and tokenizer of a verified text-classification artifact (``sentiment`` of
    schemas <= 1.3 included), and the artifact."""
    artifact = open_artifact(path)
    if artifact.task != TEXT_CLASSIFICATION:
        raise ValueError(f"{path}: the teacher must be a {TEXT_CLASSIFICATION} artifact, not {artifact.task!r}")
    teacher = AutoModelForSequenceClassification.from_pretrained(artifact.hf_dir, attn_implementation="sdpa")
    return teacher.eval().requires_grad_(False), AutoTokenizer.from_pretrained(artifact.hf_dir), artifact


def predict_logits(model: nn.Module, dataset: EncodedDataset, pad_id: int, batch_size: int,
                   desc: str = "teacher logits") -> torch.Tensor:
    """Logits for every example in dataset order: eval mode, no_grad, batches sorted by length."""
    order = sorted(range(len(dataset)), key=lambda i: len(dataset.input_ids[i]))
    collate = pad_collate(pad_id)
    device = next(model.parameters()).device
    model.eval()
    rows: list[torch.Tensor] = []
    with torch.no_grad():
        for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
            batch = collate([dataset[i] for i in order[start:start + batch_size]])
            rows.append(model(input_ids=batch["input_ids"].to(device),
                              attention_mask=batch["attention_mask"].to(device)).logits.float().cpu())
    logits = torch.empty((len(dataset), rows[0].shape[-1]))
    logits[torch.tensor(order)] = torch.cat(rows)
    return logits


def _accuracy(logits: torch.Tensor, dataset: EncodedDataset) -> float:
    return float((logits.argmax(-1) == torch.tensor(dataset.labels)).float().mean())


def run(cfg: DistillRunConfig) -> Path:
    """The `distill` verb on a complete configuration."""
    L.seed_everything(cfg.seed, workers=True)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    dcfg, models_dir = cfg.distillation, Path(cfg.output.models_dir)
    teacher_dir = Path(dcfg.teacher)
    if (models_dir / cfg.output.name).resolve() == teacher_dir.resolve():
        raise ValueError(f"output {models_dir / cfg.output.name} would overwrite the teacher")
    if cfg.model.base_model:
        raise ValueError("distill takes the student from --distillation.student, not --model.base_model")
    teacher, teacher_tokenizer, artifact = load_teacher(teacher_dir)
    labels, max_length = artifact.labels, artifact.max_length
    if list(cfg.data.labels) != labels:
        raise ValueError(f"data labels {list(cfg.data.labels)} differ from the teacher's {labels}")
    run_dir = Path(cfg.output.runs_dir) / cfg.output.name
    layers = dcfg.student_layers or default_layers(int(teacher.config.num_hidden_layers))
    if dcfg.student is None:
        # each process writes its own copy (the same weights): no rank reads a folder another one is writing
        rank = launch_rank()
        student_source = str(run_dir / ("student-init" if rank == 0 else f"student-init.rank{rank}"))
        tokenizer = teacher_tokenizer
        make_student(teacher, layers).save_pretrained(student_source, safe_serialization=True)
        tokenizer.save_pretrained(student_source)
        base_model = f"{teacher_dir.name} layers {','.join(map(str, layers))}"
    else:
        student_source = base_model = dcfg.student
        tokenizer = AutoTokenizer.from_pretrained(dcfg.student)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, max_length=max_length))
    shared_vocab = tokenizer.get_vocab() == teacher_tokenizer.get_vocab()
    if not (dcfg.cache_teacher_logits or shared_vocab):
        raise ValueError("a student with another vocabulary needs --distillation.cache_teacher_logits true")
    datamodule = TextClassificationDataModule(cfg.data, tokenizer, max_length, seed=cfg.seed)
    teacher_data = datamodule if shared_vocab else TextClassificationDataModule(
        cfg.data, teacher_tokenizer, max_length, seed=cfg.seed)
    module = DistillationModule(student_source, labels, dcfg.alpha, dcfg.temperature, cfg.model.learning_rate,
                                cfg.model.weight_decay, cfg.model.warmup_ratio, cfg.model.freeze_embeddings)
    teacher_pad = teacher_tokenizer.pad_token_id or 0
    if dcfg.cache_teacher_logits:
        datamodule.setup("fit")
        teacher_data.setup("fit")
        log.info("[1/4] caching teacher logits for %d training examples", len(teacher_data.splits["train"]))
        datamodule.splits["train"].extras["teacher_logits"] = predict_logits(
            teacher, teacher_data.splits["train"], teacher_pad, cfg.data.eval_batch_size)
    else:
        module.attach_teacher(teacher)
    log.info("[2/4] distilling %s into %s (alpha %.2f, T %.1f)", teacher_dir, base_model, dcfg.alpha,
             dcfg.temperature)
    fitted = fit_and_test(module, datamodule, cfg.trainer, run_dir, cfg.output.resume)
    if fitted.module is None:  # not global rank 0: rank 0 tests the teacher and exports
        return models_dir / cfg.output.name
    metrics = fitted.metrics
    log.info("[3/4] testing the teacher on the test split")
    teacher_data.setup("test")
    teacher_acc = _accuracy(predict_logits(teacher, teacher_data.splits["test"], teacher_pad,
                                           cfg.data.eval_batch_size, desc="teacher test"),
                            teacher_data.splits["test"])
    distillation = {"teacher": artifact.name, "teacher_path": str(teacher_dir.resolve()),
                    "student": dcfg.student or "derived", "alpha": dcfg.alpha, "temperature": dcfg.temperature,
                    "student_layers": layers if dcfg.student is None else None,
                    "teacher_test_accuracy": teacher_acc, "student_test_accuracy": metrics["test_accuracy"],
                    "accuracy_retained": metrics["test_accuracy"] / teacher_acc if teacher_acc else 0.0}
    log.info("test accuracy: student %.4f, teacher %.4f (%.1f%% retained)", metrics["test_accuracy"],
             teacher_acc, 100 * distillation["accuracy_retained"])
    log.info("[4/4] exporting to %s/%s", models_dir, cfg.output.name)
    return export_classifier(fitted.module.model, tokenizer, models_dir, cfg.output.name, labels=labels,
                             base_model=base_model, max_length=max_length, metrics=metrics,
                             training={**dataclasses.asdict(cfg), "distributed": fitted.distributed},
                             extra={"distillation": distillation},
                             curve=plot_training_curves(run_dir), int8=cfg.data if cfg.output.int8 else None)
