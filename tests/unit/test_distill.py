"""Distillation model code: the loss formula, the layer-dropped student, the frozen unregistered teacher."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import LABELS, make_sentences, make_tiny_base
from training.classification.data import EncodedDataset, pad_collate
from training.classification.knowledge_distillation import (
    DistillationModule,
    default_layers,
    distillation_loss,
    make_student,
)
from training.config import ModelConfig
from training.verbs.distill import DistillConfig, DistillOutputConfig, distill, predict_logits


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_base(tmp_path_factory.mktemp("teacher4"), layers=4)


@pytest.fixture
def teacher(teacher_dir: Path) -> torch.nn.Module:
    return AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()


def logits(seed: int) -> torch.Tensor:
    return torch.randn(8, 2, generator=torch.Generator().manual_seed(seed)) * 3


def test_alpha_zero_is_plain_cross_entropy() -> None:
    student, teacher, labels = logits(0), logits(1), torch.tensor([0, 1] * 4)
    expected = torch.nn.functional.cross_entropy(student, labels)
    torch.testing.assert_close(distillation_loss(student, teacher, labels, 0.0, 2.0), expected)


def test_alpha_one_is_t_squared_kl_to_the_teacher() -> None:
    student, teacher, labels, t = logits(0), logits(1), torch.tensor([0, 1] * 4), 3.0
    p_teacher = torch.softmax(teacher / t, -1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / t, -1))).sum(-1).mean()
    torch.testing.assert_close(distillation_loss(student, teacher, labels, 1.0, t), t * t * kl)


def test_kl_term_vanishes_when_student_matches_teacher() -> None:
    same, labels = logits(0), torch.tensor([0, 1] * 4)
    assert distillation_loss(same, same.clone(), labels, 1.0, 2.0).abs() < 1e-6
    assert distillation_loss(logits(1), same, labels, 1.0, 2.0) > 1e-3


def test_default_layers_take_every_other_one() -> None:
    assert default_layers(6) == [0, 2, 4]
    assert default_layers(4) == [0, 2]


def test_student_copies_embeddings_kept_layers_and_head(teacher: torch.nn.Module) -> None:
    student = make_student(teacher, [1, 3])
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        layer = re.match(r"bert\.encoder\.layer\.(\d+)\.(.+)", key)
        source = f"bert.encoder.layer.{[1, 3][int(layer[1])]}.{layer[2]}" if layer else key
        assert torch.equal(value, t_state[source]), key
    assert any(k.startswith("bert.embeddings.") for k in s_state) and "classifier.weight" in s_state
    assert student.training, "the student is returned ready to train"
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    assert not torch.allclose(student.eval()(ids).logits, teacher(ids).logits), "layers were really dropped"


@pytest.mark.parametrize("layers", [[], [2, 1], [0, 0], [4], [-1, 2]])
def test_student_rejects_bad_layer_lists(teacher: torch.nn.Module, layers: list[int]) -> None:
    with pytest.raises(ValueError, match="student layers"):
        make_student(teacher, layers)


def module_for(teacher_dir: Path, teacher: torch.nn.Module, tmp_path: Path) -> DistillationModule:
    make_student(teacher, [0, 2]).save_pretrained(tmp_path / "student")
    module = DistillationModule(str(tmp_path / "student"), LABELS, alpha=0.5, temperature=2.0, learning_rate=1e-2)
    module.attach_teacher(teacher)
    return module


def test_teacher_is_invisible_to_optimiser_and_checkpoint(teacher_dir: Path, teacher: torch.nn.Module,
                                                           tmp_path: Path) -> None:
    module = module_for(teacher_dir, teacher, tmp_path)
    module._trainer = SimpleNamespace(estimated_stepping_batches=10)  # type: ignore[assignment]
    optimised = {id(p) for g in module.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    assert optimised and not optimised & {id(p) for p in teacher.parameters()}
    assert not any(k.startswith("teacher") for k in module.state_dict())
    assert "teacher" not in module.hparams and module.hparams["alpha"] == 0.5
    module.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    twin = copy.deepcopy(module)  # as Lightning's weight averaging copies the student
    assert twin.teacher is teacher, "a copy of the student copied the teacher's weights"
    assert all(a is not b for a, b in zip(twin.parameters(), module.parameters(), strict=True))


def test_the_student_can_train_with_its_lowest_layers_frozen(teacher: torch.nn.Module, tmp_path: Path) -> None:
    make_student(teacher, [0, 2]).save_pretrained(tmp_path / "student")
    module = DistillationModule(str(tmp_path / "student"), LABELS, frozen_layers=1)
    layers = module.model.base_model.encoder.layer
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())


def test_cached_and_live_teacher_logits_give_the_same_loss(teacher_dir: Path, teacher: torch.nn.Module,
                                                           tmp_path: Path) -> None:
    module = module_for(teacher_dir, teacher, tmp_path).eval()
    batch = pad_collate(0)([{"input_ids": [2, 5, 6, 7, 3], "label": 1}, {"input_ids": [2, 8, 3], "label": 0}])
    with torch.no_grad():
        cached = {**batch, "teacher_logits": teacher(input_ids=batch["input_ids"],
                                                     attention_mask=batch["attention_mask"]).logits}
    module.log = lambda *a, **k: None  # type: ignore[method-assign]
    torch.testing.assert_close(module.training_step(batch, 0), module.training_step(cached, 0))


def test_fit_trains_the_student_and_leaves_the_teacher_untouched(teacher_dir: Path, teacher: torch.nn.Module,
                                                                  tmp_path: Path) -> None:
    module = module_for(teacher_dir, teacher, tmp_path)
    before_teacher = {k: v.clone() for k, v in teacher.state_dict().items()}
    before_student = {k: v.clone() for k, v in module.model.state_dict().items()}
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    rows = make_sentences(64)
    dataset = EncodedDataset(tokenizer([t for t, _ in rows])["input_ids"], [label for _, label in rows])
    loader = DataLoader(dataset, batch_size=16, shuffle=True, collate_fn=pad_collate(0))
    L.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(module, loader)
    assert not teacher.training
    assert all(torch.equal(before_teacher[k], v) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(before_student[k], v) for k, v in module.model.state_dict().items())


def test_teacher_logits_under_bf16_autocast_are_close_to_fp32_and_in_dataset_order(teacher: torch.nn.Module) -> None:
    ids = [[2, 5, 6, 7, 3], [2, 8, 3], [2, 9, 10, 11, 12, 13, 3]]
    dataset = EncodedDataset(ids, [1, 0, 1])
    fp32 = predict_logits(teacher, dataset, 0, batch_size=2)
    bf16 = predict_logits(teacher, dataset, 0, batch_size=2, bf16=True)
    assert fp32.dtype == bf16.dtype == torch.float32
    with torch.no_grad():  # row i is example i, whatever the length-sorted batching did
        alone = teacher(input_ids=torch.tensor([ids[2]])).logits[0]
    torch.testing.assert_close(fp32[2], alone, atol=1e-5, rtol=1e-5)
    assert not torch.equal(fp32, bf16)  # autocast did run in bf16
    torch.testing.assert_close(bf16, fp32, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("option", [{"label_smoothing": 0.1}, {"r_drop": 1.0}])
def test_distillation_refuses_the_cross_entropy_options(tmp_path: Path, option: dict[str, float]) -> None:
    """They shape the student's cross-entropy, which the distillation loss replaces: refused, not ignored."""
    with pytest.raises(ValueError, match="sentiment options"):
        distill(model=ModelConfig(**option), distillation=DistillConfig(teacher=str(tmp_path / "teacher")),
                output=DistillOutputConfig(models_dir=str(tmp_path / "models"), runs_dir=str(tmp_path / "runs")))
