"""`python -m training distill`: distil a text-classification artifact (the teacher) into a smaller student, test
both, export the student."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from tqdm import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from contract import TEXT_CLASSIFICATION, Artifact, open_artifact
from training.classification.classifier import build_classifier
from training.classification.data import EncodedDataset, TextClassificationDataModule, encode, pad_collate
from training.classification.knowledge_distillation import DistillationModule, default_layers, make_student
from training.classification.pretrained import resolve_model
from training.classification.teacher_cache import TeacherLogitsCache
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
    """The student: an HF folder, hub id or offline name (all-minilm-l6-v2, all-mpnet-base-v2), of any
    architecture and vocabulary; None = the teacher with only student_layers kept."""
    student_layers: list[int] | None = None
    """Layers kept by a layer-dropped student: of the teacher (student None; None = every other one from the
    first, 6 -> 0,2,4) or of `student` (None = all of them)."""
    alpha: float = 0.5
    """Weight of the soft-target KL term; 1 - alpha weighs cross-entropy on the labels."""
    temperature: float = 2.0
    cache_teacher_logits: bool = True
    """Run the teacher once per text (train and test splits) before training, its logits kept by text in
    <runs_dir>/teacher-logits/<teacher>-<manifest sha256>.safetensors: any later student of the same teacher reuses
    them. False = run the teacher at every step (the student must share its vocabulary)."""


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
    teacher = AutoModelForSequenceClassification.from_pretrained(artifact.hf_dir)  # sdpa where it has it (not MPNet)
    return teacher.eval().requires_grad_(False), AutoTokenizer.from_pretrained(artifact.hf_dir), artifact


def predict_logits(model: nn.Module, dataset: EncodedDataset, pad_id: int, batch_size: int,
                   bf16: bool = False) -> torch.Tensor:
    """Logits for every example in dataset order: eval mode, no_grad, batches sorted by length; under bf16
    autocast when ``bf16`` (as the student trains in bf16-mixed)."""
    order = sorted(range(len(dataset)), key=lambda i: len(dataset.input_ids[i]))
    collate = pad_collate(pad_id)
    device = next(model.parameters()).device
    model.eval()
    rows: list[torch.Tensor] = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in tqdm(range(0, len(order), batch_size), desc="teacher logits", unit="batch"):
            batch = collate([dataset[i] for i in order[start:start + batch_size]])
            rows.append(model(input_ids=batch["input_ids"].to(device),
                              attention_mask=batch["attention_mask"].to(device)).logits.float().cpu())
    logits = torch.empty((len(dataset), rows[0].shape[-1]))
    logits[torch.tensor(order)] = torch.cat(rows)
    return logits


def text_predictor(model: nn.Module, tokenizer: Any, max_length: int, batch_size: int,
                   bf16: bool = False) -> Callable[[Sequence[str]], torch.Tensor]:
    """texts -> the model's logits [n, labels], each text tokenised as the model was trained (truncated to
    max_length), under bf16 autocast when ``bf16``."""
    def predict(texts: Sequence[str]) -> torch.Tensor:
        return predict_logits(model, encode(tokenizer, texts, [0] * len(texts), max_length),
                              tokenizer.pad_token_id or 0, batch_size, bf16)

    return predict


def teacher_cache(runs_dir: str, artifact: Artifact) -> TeacherLogitsCache:
    """The logits cache of this teacher version (named by its manifest's sha256), shared by every run in runs_dir."""
    path = Path(runs_dir) / "teacher-logits" / f"{artifact.name}-{artifact.manifest_sha256[:16]}.safetensors"
    return TeacherLogitsCache(path, artifact.manifest_sha256, len(artifact.labels))


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
    if cfg.model.label_smoothing or cfg.model.r_drop:
        raise ValueError("--model.label_smoothing and --model.r_drop are sentiment options: the distillation loss "
                         "(--distillation.alpha, --distillation.temperature) replaces the student's cross-entropy")
    teacher, teacher_tokenizer, artifact = load_teacher(teacher_dir)
    labels, max_length = artifact.labels, artifact.max_length
    if list(cfg.data.labels) != labels:
        raise ValueError(f"data labels {list(cfg.data.labels)} differ from the teacher's {labels}")
    run_dir = Path(cfg.output.runs_dir) / cfg.output.name
    student_path = None if dcfg.student is None else resolve_model(dcfg.student)
    layers = None
    if student_path is None or dcfg.student_layers:
        full = teacher if student_path is None else build_classifier(student_path, labels)
        layers = dcfg.student_layers or default_layers(int(full.config.num_hidden_layers))
        # each process writes its own copy (the same weights): no rank reads a folder another one is writing
        rank = launch_rank()
        student_source = str(run_dir / ("student-init" if rank == 0 else f"student-init.rank{rank}"))
        tokenizer = teacher_tokenizer if student_path is None else AutoTokenizer.from_pretrained(student_path)
        make_student(full, layers).save_pretrained(student_source, safe_serialization=True)
        tokenizer.save_pretrained(student_source)
        base_model = f"{dcfg.student or teacher_dir.name} layers {','.join(map(str, layers))}"
    else:
        student_source = base_model = str(student_path)
        tokenizer = AutoTokenizer.from_pretrained(student_source)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, max_length=max_length))
    shared_vocab = tokenizer.get_vocab() == teacher_tokenizer.get_vocab()
    if not (dcfg.cache_teacher_logits or shared_vocab):
        raise ValueError("a student with another vocabulary needs --distillation.cache_teacher_logits true")
    datamodule = TextClassificationDataModule(cfg.data, tokenizer, max_length, seed=cfg.seed)
    module = DistillationModule(student_source, labels, dcfg.alpha, dcfg.temperature, cfg.model.learning_rate,
                                cfg.model.weight_decay, cfg.model.warmup_ratio, cfg.model.freeze_embeddings,
                                cfg.model.frozen_layers, cfg.model.layer_lr_decay)
    predict = text_predictor(teacher, teacher_tokenizer, max_length, cfg.data.eval_batch_size,
                             bf16=str(cfg.trainer.precision).startswith("bf16"))
    datamodule.setup("fit")
    datamodule.setup("test")
    train, test = datamodule.splits["train"], datamodule.splits["test"]
    if dcfg.cache_teacher_logits:
        cache = teacher_cache(cfg.output.runs_dir, artifact)
        ran = cache.fill(train.texts + test.texts, predict)
        log.info("[1/4] teacher logits of %d train and test texts: %d computed, the rest from %s",
                 len(set(train.texts + test.texts)), ran, cache.path)
        train.extras["teacher_logits"] = cache.lookup(train.texts)
        teacher_logits: Callable[[Sequence[str]], torch.Tensor] = cache.lookup
    else:
        module.attach_teacher(teacher)
        teacher_logits = predict
    log.info("[2/4] distilling %s into %s (alpha %.2f, T %.1f)", teacher_dir, base_model, dcfg.alpha,
             dcfg.temperature)
    fitted = fit_and_test(module, datamodule, cfg.trainer, run_dir, cfg.output.resume)
    if fitted.module is None:  # not global rank 0: rank 0 tests the teacher and exports
        return models_dir / cfg.output.name
    metrics = fitted.metrics
    log.info("[3/4] testing the teacher on the test split")
    teacher_acc = _accuracy(teacher_logits(test.texts), test)
    distillation = {"teacher": artifact.name, "teacher_path": str(teacher_dir.resolve()),
                    "student": dcfg.student or "derived", "alpha": dcfg.alpha, "temperature": dcfg.temperature,
                    "student_layers": layers,
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
