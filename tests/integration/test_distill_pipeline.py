"""`distill` end to end on tiny models: teacher artifact in, student artifact out.

The first student is an explicit, randomly initialised 2-layer HF folder (same vocabulary), so the loss has far to
fall; the derived (layer-dropped) student is covered in tests/unit/test_distill.py. The second one is a tiny MPNet
with a vocabulary of its own (other ids, other special tokens): it learns from the teacher's logits looked up by
text, which a later student of the same teacher reuses without running the teacher.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer, MPNetConfig, MPNetForSequenceClassification, MPNetTokenizer

from contract import LEGACY_CLASSIFICATION, TEXT_CLASSIFICATION, ArtifactError, sha256_file, validate_manifest
from tests.conftest import LABELS, WORDS, make_tiny_base, train_toy_classifier
from training.classification.data import read_examples
from training.classification.teacher_cache import TeacherLogitsCache
from training.config import DataConfig, ModelConfig, OutputConfig, TrainerConfig
from training.export.text_classification import export_classifier
from training.verbs import distill as distill_verb
from training.verbs.distill import DistillConfig, distill, load_teacher

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer tiny BERT fine-tuned for a few steps on the toy task, exported as models/tiny-teacher."""
    root = tmp_path_factory.mktemp("distill")
    base = make_tiny_base(root / "base", layers=4)
    model, tokenizer = train_toy_classifier(base)
    return export_classifier(model, tokenizer, root / "models", "tiny-teacher", labels=LABELS,
                             base_model=str(base), max_length=32, metrics={"test_accuracy": 1.0},
                             training={"note": "toy teacher"})


@pytest.fixture(scope="module")
def distilled(teacher_artifact: Path, tiny_base: Path, tiny_data: Path) -> tuple[Path, str]:
    weights = teacher_artifact / "hf" / "model.safetensors"
    before = sha256_file(weights)
    student = distill(
        data=DataConfig(data_dir=str(tiny_data), batch_size=16, eval_batch_size=32),
        model=ModelConfig(learning_rate=3e-3, warmup_ratio=0.1),
        trainer=TrainerConfig(max_steps=64, max_epochs=50, val_check_interval=16, log_every_n_steps=2,
                              accelerator="cpu", devices=1, patience=50),
        output=OutputConfig(name="tiny-student", models_dir=str(teacher_artifact.parent),
                            runs_dir=str(teacher_artifact.parent.parent / "runs")),
        distillation=DistillConfig(teacher=str(teacher_artifact), student=str(tiny_base), alpha=0.7,
                                   temperature=2.0),
        seed=3,
    )
    return student, before


def test_student_artifact_names_the_teacher_and_both_accuracies(teacher_artifact: Path, tiny_base: Path,
                                                                distilled: tuple[Path, str]) -> None:
    student, _ = distilled
    manifest = json.loads((student / "manifest.json").read_text())
    validate_manifest(manifest)
    block = manifest["distillation"]
    assert block["teacher"] == "tiny-teacher" and block["teacher_path"] == str(teacher_artifact.resolve())
    assert (block["alpha"], block["temperature"], block["student"]) == (0.7, 2.0, str(tiny_base))
    assert block["student_test_accuracy"] == manifest["metrics"]["test_accuracy"] >= 0.9
    assert block["teacher_test_accuracy"] >= 0.9
    assert block["accuracy_retained"] == pytest.approx(block["student_test_accuracy"] / block["teacher_test_accuracy"])
    assert manifest["max_length"] == 32 and manifest["labels"] == LABELS
    assert json.loads((student / "hf" / "config.json").read_text())["num_hidden_layers"] == 2
    assert {"model.onnx", "model.attn.onnx", "hf/model.safetensors"} <= set(manifest["files"])
    assert manifest["onnx"]["max_abs_diff"]["logits"] < 1e-3


def test_teacher_weights_are_bitwise_unchanged(teacher_artifact: Path, distilled: tuple[Path, str]) -> None:
    _, before = distilled
    manifest = json.loads((teacher_artifact / "manifest.json").read_text())
    assert sha256_file(teacher_artifact / "hf" / "model.safetensors") == before
    assert before == manifest["files"]["hf/model.safetensors"]["sha256"]


def test_training_loss_falls(teacher_artifact: Path, distilled: tuple[Path, str]) -> None:
    logs = teacher_artifact.parent.parent / "runs" / "tiny-student" / "logs"
    with next(logs.glob("version_*/metrics.csv")).open() as fh:
        losses = [float(row["train_loss"]) for row in csv.DictReader(fh) if row.get("train_loss")]
    assert len(losses) >= 10
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


def test_a_teacher_of_schema_1_3_with_task_sentiment_is_accepted(teacher_artifact: Path, tmp_path: Path) -> None:
    legacy = Path(shutil.copytree(teacher_artifact, tmp_path / teacher_artifact.name))
    manifest = json.loads((legacy / "manifest.json").read_text())
    assert manifest["task"] == TEXT_CLASSIFICATION
    manifest.update(task=LEGACY_CLASSIFICATION, schema_version="1.3")
    (legacy / "manifest.json").write_text(json.dumps(manifest))
    teacher, _, artifact = load_teacher(legacy)
    assert artifact.task == TEXT_CLASSIFICATION and artifact.labels == LABELS and artifact.max_length == 32
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_a_teacher_whose_files_changed_is_refused(teacher_artifact: Path, tmp_path: Path) -> None:
    tampered = Path(shutil.copytree(teacher_artifact, tmp_path / teacher_artifact.name))
    (tampered / "hf" / "config.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"hf/config\.json"):
        load_teacher(tampered)


def make_tiny_mpnet(path: Path) -> Path:
    """A randomly initialised 2-layer MPNet whose word-level vocabulary orders the toy words backwards after
    MPNet's own special tokens (<s>=0, <pad>=1, </s>=2): no token id means what it means to the BERT teacher."""
    tokens = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>", *reversed(WORDS), ",", ".", "unused"]
    tokenizer = MPNetTokenizer(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=True,
                               unk_token="[UNK]")
    torch.manual_seed(1)
    config = MPNetConfig(vocab_size=len(tokens), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id)
    MPNetForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run_distill(teacher: Path, student: str, data: Path, root: Path, name: str, steps: int, seed: int = 3,
                max_train_examples: int | None = None, **distillation: Any) -> Path:
    return distill(
        data=DataConfig(data_dir=str(data), batch_size=16, eval_batch_size=32, max_train_examples=max_train_examples),
        model=ModelConfig(learning_rate=3e-3, warmup_ratio=0.1),
        trainer=TrainerConfig(max_steps=steps, max_epochs=50, val_check_interval=min(16, steps), log_every_n_steps=2,
                              accelerator="cpu", devices=1, patience=50),
        output=OutputConfig(name=name, models_dir=str(root / "models"), runs_dir=str(root / "runs"), int8=False),
        distillation=DistillConfig(teacher=str(teacher), student=student, alpha=0.7, temperature=2.0,
                                   **distillation),
        seed=seed,
    )


@pytest.fixture(scope="module")
def cross_vocab(teacher_artifact: Path, tiny_data: Path,
                tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(the MPNet student's artifact, its base folder, the run root) after distilling the BERT teacher into it."""
    root = tmp_path_factory.mktemp("cross-vocab")
    base = make_tiny_mpnet(root / "mpnet-base")
    return run_distill(teacher_artifact, str(base), tiny_data, root, "tiny-mpnet-student", 64), base, root


def test_a_student_of_another_vocabulary_and_architecture_distils(teacher_artifact: Path,
                                                                   cross_vocab: tuple[Path, Path, Path]) -> None:
    student, base, root = cross_vocab
    teacher_vocab = AutoTokenizer.from_pretrained(teacher_artifact / "hf").get_vocab()
    student_vocab = AutoTokenizer.from_pretrained(student / "hf").get_vocab()
    assert teacher_vocab["good"] != student_vocab["good"] and "[CLS]" not in student_vocab
    manifest = json.loads((student / "manifest.json").read_text())
    validate_manifest(manifest)
    assert json.loads((student / "hf" / "config.json").read_text())["model_type"] == "mpnet"
    assert manifest["base_model"] == str(base) and manifest["distillation"]["student_layers"] is None
    assert manifest["distillation"]["student_test_accuracy"] >= 0.9, manifest["distillation"]
    assert manifest["onnx"]["max_abs_diff"]["logits"] < 1e-3
    with next((root / "runs" / "tiny-mpnet-student" / "logs").glob("version_*/metrics.csv")).open() as fh:
        losses = [float(row["train_loss"]) for row in csv.DictReader(fh) if row.get("train_loss")]
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


def test_teacher_logits_are_kept_by_text_and_a_second_student_reuses_them(
        teacher_artifact: Path, tiny_data: Path, cross_vocab: tuple[Path, Path, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, base, root = cross_vocab
    teacher, tokenizer, artifact = load_teacher(teacher_artifact)
    cache_file = root / "runs" / "teacher-logits" / f"tiny-teacher-{artifact.manifest_sha256[:16]}.safetensors"
    cache = TeacherLogitsCache(cache_file, artifact.manifest_sha256, len(LABELS))
    texts = [ex.text for split in ("train.tsv", "test.tsv")
             for ex in read_examples(tiny_data / split, "sentence", "label", LABELS)]
    assert len(cache) == len(set(texts))
    sample = texts[:5] + texts[-5:]
    with torch.no_grad():
        fresh = teacher(**tokenizer(sample, padding=True, truncation=True, max_length=32, return_tensors="pt")).logits
    torch.testing.assert_close(cache.lookup(sample), fresh, atol=1e-5, rtol=1e-4)

    forwards: list[int] = []

    def counted_teacher(path: Path) -> Any:
        loaded = load_teacher(path)
        loaded[0].register_forward_hook(lambda *_: forwards.append(1))
        return loaded

    monkeypatch.setattr(distill_verb, "load_teacher", counted_teacher)
    before = sha256_file(cache_file)
    # another student (the MPNet cut to its second layer), another subset and order of the training texts
    again = run_distill(teacher_artifact, str(base), tiny_data, root, "tiny-mpnet-1layer", 2,
                        student_layers=[1], max_train_examples=100, seed=9)
    assert forwards == [], "the teacher ran again"
    assert sha256_file(cache_file) == before
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["distillation"]["student_layers"] == [1]
    assert manifest["base_model"] == f"{base} layers 1"
    assert json.loads((again / "hf" / "config.json").read_text())["num_hidden_layers"] == 1
    assert manifest["distillation"]["teacher_test_accuracy"] >= 0.9  # from the cache as well
