"""`python -m training export`: a Lightning checkpoint of `training sentiment` as a text-classification artifact
in models/<name>/."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from training.classification.classifier import TextClassifier
from training.export.text_classification import export_classifier
from training.trainer import read_run_distributed, read_run_metrics


def export(checkpoint: Path, name: str = "sentiment-minilm", models_dir: Path = Path("models"),
           max_length: int = 128) -> Path:
    """Export a Lightning checkpoint of `training sentiment` (metrics are taken from the checkpoint's run).

    Args:
        checkpoint: a .ckpt written by `python -m training sentiment` (runs/<name>/checkpoints/...).
        name: artifact folder name under models_dir.
        models_dir: where artifacts live.
        max_length: tokens kept per text (longer inputs are truncated).
    """
    module = TextClassifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    hp = dict(module.hparams)
    tokenizer = AutoTokenizer.from_pretrained(hp["base_model"])
    run_dir = Path(checkpoint).resolve().parent.parent
    metrics = read_run_metrics(run_dir)
    training = {"checkpoint": str(checkpoint), **hp, "distributed": read_run_distributed(run_dir)}
    return export_classifier(module.model, tokenizer, Path(models_dir), name, labels=list(hp["labels"]),
                             base_model=hp["base_model"], max_length=max_length, metrics=metrics, training=training,
                             curve=run_dir / "training_curve.png")
