"""A tiny BERT from config: train a few steps, checkpoint, resume, test, export; ORT parity; checksums."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from contract import TEXT_CLASSIFICATION, open_artifact, sha256_file, validate_manifest
from training.config import DataConfig, ModelConfig, OutputConfig, SentimentConfig, TrainerConfig
from training.trainer import StaleRun
from training.verbs.export import export
from training.verbs.sentiment import run

pytestmark = pytest.mark.slow


def config(tiny_base: Path, tiny_data: Path, root: Path, max_steps: int) -> SentimentConfig:
    return SentimentConfig(
        data=DataConfig(data_dir=str(tiny_data), batch_size=16, eval_batch_size=32),
        model=ModelConfig(base_model=str(tiny_base), max_length=32, learning_rate=3e-3, warmup_ratio=0.1),
        trainer=TrainerConfig(max_steps=max_steps, max_epochs=50, val_check_interval=8, log_every_n_steps=2,
                              accelerator="cpu", devices=1, patience=50),
        output=OutputConfig(name="tiny", models_dir=str(root / "models"), runs_dir=str(root / "runs")),
        seed=7,
    )


@pytest.fixture(scope="module")
def trained(tiny_base: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    run(config(tiny_base, tiny_data, root, max_steps=16))  # "interrupted" after 16 steps
    first = json.loads((root / "runs" / "tiny" / "test_metrics.json").read_text())
    assert first["global_step"] == 16
    artifact = run(config(tiny_base, tiny_data, root, max_steps=64))  # resumes from last.ckpt
    return root, artifact


def test_resume_continues_from_the_last_checkpoint(trained: tuple[Path, Path]) -> None:
    root, _ = trained
    runs = root / "runs" / "tiny"
    assert (runs / "checkpoints" / "last.ckpt").is_file() and (runs / "checkpoints" / "best.ckpt").is_file()
    assert torch.load(runs / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 64
    first_steps = [_logged_steps(p) for p in sorted((runs / "logs").glob("version_*/metrics.csv"))]
    assert len(first_steps) == 2
    assert min(first_steps[1]) > 16, "the second run continued after step 16 instead of starting over"


def test_a_run_cut_short_by_max_steps_is_not_passed_off_as_a_longer_one(tiny_base: Path, tiny_data: Path,
                                                                        tmp_path: Path) -> None:
    """256 rows in batches of 16: an epoch is 16 steps. A 3-step run resumed with ``max_epochs: 1`` would train
    nothing (Lightning counts the cut epoch as done) and export the 3-step model: refused."""
    def budget(cfg: SentimentConfig, max_steps: int, resume: bool = True) -> SentimentConfig:
        return dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, max_steps=max_steps, max_epochs=1),
                                   output=dataclasses.replace(cfg.output, resume=resume))

    base = config(tiny_base, tiny_data, tmp_path, max_steps=3)
    steps = tmp_path / "runs" / "tiny" / "test_metrics.json"
    run(budget(base, 3))
    run(budget(base, 3))  # the same finished run again: re-tested and re-exported, nothing to train
    assert json.loads(steps.read_text())["global_step"] == 3
    with pytest.raises(StaleRun, match=r"stopped at step 3 .* no step of this fit's 16"):
        run(budget(base, -1))
    run(budget(base, -1, resume=False))
    assert json.loads(steps.read_text())["global_step"] == 16


def _logged_steps(path: Path) -> list[int]:
    lines = path.read_text().splitlines()
    step = lines[0].split(",").index("step")
    return [int(line.split(",")[step]) for line in lines[1:]]


def test_training_learns_the_toy_task(trained: tuple[Path, Path]) -> None:
    root, artifact = trained
    metrics = json.loads((artifact / "manifest.json").read_text())["metrics"]
    assert metrics["test_accuracy"] >= 0.9
    assert metrics["split_sizes"] == {"train": 256, "val": 64, "test": 64}
    assert (root / "runs" / "tiny" / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_artifact_is_complete_and_checksums_match(trained: tuple[Path, Path]) -> None:
    _, artifact = trained
    manifest = json.loads((artifact / "manifest.json").read_text())
    validate_manifest(manifest)
    assert manifest["task"] == TEXT_CLASSIFICATION and open_artifact(artifact).labels == ["negative", "positive"]
    for name in ["model.onnx", "model.attn.onnx", "hf/config.json", "hf/model.safetensors", "hf/tokenizer.json",
                 "training_curve.png"]:
        assert name in manifest["files"], name
    on_disk = {p.relative_to(artifact).as_posix() for p in artifact.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == set(manifest["files"])
    for name, entry in manifest["files"].items():
        assert sha256_file(artifact / name) == entry["sha256"], name
    config = json.loads((artifact / "hf" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert manifest["training"]["trainer"]["max_steps"] == 64
    assert not list(artifact.parent.glob(".tmp-*")), "staging folders are cleaned up"


def test_onnx_graphs_match_pytorch_on_real_text(trained: tuple[Path, Path]) -> None:
    _, artifact = trained
    tokenizer = AutoTokenizer.from_pretrained(artifact / "hf")
    model = AutoModelForSequenceClassification.from_pretrained(artifact / "hf", attn_implementation="eager").eval()
    enc = tokenizer(["the movie was very good .", "boring", "the plot was dull and the actors were bad ."],
                    padding=True, return_tensors="np")
    feeds = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}, output_attentions=True)
    logits = ort.InferenceSession(str(artifact / "model.onnx")).run(["logits"], feeds)[0]
    attn_logits, attentions = ort.InferenceSession(str(artifact / "model.attn.onnx")).run(None, feeds)
    np.testing.assert_allclose(logits, out.logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(attn_logits, out.logits.numpy(), atol=1e-4)
    assert attentions.shape == (2, 3, 4, feeds["input_ids"].shape[1], feeds["input_ids"].shape[1])
    np.testing.assert_allclose(attentions[:, 0], torch.stack(out.attentions)[:, 0].numpy(), atol=1e-4)
    np.testing.assert_allclose(attentions.sum(-1), 1.0, atol=1e-4)


def test_export_verb_from_checkpoint(trained: tuple[Path, Path]) -> None:
    root, _ = trained
    out = export(root / "runs" / "tiny" / "checkpoints" / "best.ckpt", name="tiny-from-ckpt",
                 models_dir=root / "models", max_length=32)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "tiny-from-ckpt"
    assert manifest["metrics"]["test_accuracy"] >= 0.9  # read from the run that wrote the checkpoint
    assert manifest["onnx"]["max_abs_diff"]["logits"] < 1e-3
