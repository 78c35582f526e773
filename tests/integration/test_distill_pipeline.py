"""`distill` end to end on tiny models: teacher artifact in, student artifact out.

The student here is an explicit, randomly initialised 2-layer HF folder (same vocabulary), so the
loss has far to fall; the derived (layer-dropped) student is covered in tests/unit/test_distill.py.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from contract import LEGACY_CLASSIFICATION, TEXT_CLASSIFICATION, ArtifactError, sha256_file, validate_manifest
from tests.conftest import LABELS, make_tiny_base, train_toy_classifier
from training.config import DataConfig, ModelConfig, OutputConfig, TrainerConfig
from training.export.text_classification import export_classifier
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
