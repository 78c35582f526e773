"""A tiny GPT-2 text-generation artifact written by the real export code (random weights, BPE of a few lines)."""

from __future__ import annotations

from pathlib import Path

CONTEXT = 48
LINES = [
    "Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little.",
    "The sea was calm and the whale rose slowly from the deep water near the ship.",
    "It is a way I have of driving off the spleen and regulating the circulation.",
    "Whenever I find myself growing grim about the mouth, I account it high time to get to sea.",
    "The captain walked the deck at night and the sailors sang of home and of the long voyage.",
]


def write_corpus(root: Path, copies: int = 6) -> Path:
    """``copies`` small .txt documents of the lines above (each document a different rotation)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
        lines = LINES[i % len(LINES):] + LINES[: i % len(LINES)]
        (root / f"doc_{i}.txt").write_text("\n".join(lines * 3))
    return root


def make_tiny_lm_artifact(models_dir: Path, name: str = "tiny-gpt2", onnx: bool = True,
                          int8: Path | None = None) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from training.export.text_generation import export_lm
    from training.language_model.causal_lm import gpt2_config
    from training.language_model.corpus import train_tokenizer

    tokenizer = train_tokenizer(LINES * 4, vocab_size=320, max_length=CONTEXT)
    torch.manual_seed(0)
    config = gpt2_config("tiny", len(tokenizer), CONTEXT, int(tokenizer.eos_token_id))
    model = GPT2LMHeadModel(GPT2Config(**config)).eval()
    return export_lm(model, tokenizer, models_dir, name, base_model="gpt2-tiny (random, test fixture)",
                     context_length=CONTEXT, metrics={"perplexity": float(len(tokenizer))},
                     training={"note": "untrained test fixture"}, onnx=onnx, int8=int8)


def without_attention_graph(artifact: Path, models_dir: Path) -> Path:
    """A copy of ``artifact`` in ``models_dir`` as exported before schema 1.2: no model.attn.onnx, manifest 1.1."""
    import json
    import shutil

    copy = shutil.copytree(artifact, models_dir / artifact.name, ignore=shutil.ignore_patterns("model.attn.onnx"))
    manifest = json.loads((copy / "manifest.json").read_text())
    for key in ("attention", "attention_outputs"):
        del manifest["onnx"][key]
    del manifest["files"]["model.attn.onnx"]
    manifest["onnx"]["max_abs_diff"] = {"logits": manifest["onnx"]["max_abs_diff"]["logits"]}
    manifest["schema_version"] = "1.1"
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return Path(copy)


def linked_models_dir(models_dir: Path, *artifacts: Path) -> Path:
    """``models_dir`` holding a symlink to each artifact folder (one server over artifacts built apart)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    for artifact in artifacts:
        (models_dir / artifact.name).symlink_to(artifact, target_is_directory=True)
    return models_dir
