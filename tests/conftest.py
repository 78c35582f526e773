"""Shared fixtures: tiny data and tiny BERT models built from config (no ../shared, no network)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun", "warm"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor", "sad", "cold"]
OTHER = ["movie", "film", "plot", "actors", "story", "the", "a", "is", "was", "very", "not", "and", "it", "this", "one"]
WORDS = [*POSITIVE, *NEGATIVE, *OTHER]
LABELS = ["negative", "positive"]


def make_tiny_base(path: Path, layers: int = 2) -> Path:
    """A randomly initialised tiny BERT with a word-level vocab, saved as an HF folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(0)

    path.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ".", ","]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_sentences(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """Separable toy sentiment data: the adjective decides the label."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        adjective = rng.choice(POSITIVE if label else NEGATIVE)
        rows.append((f"the {rng.choice(['movie', 'film', 'plot', 'story'])} was very {adjective} .", label))
    return rows


def train_toy_classifier(base: Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer): the tiny BERT at ``base`` trained 20 full-batch steps on the toy task."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}).train()
    rows = make_sentences(128, seed=5)
    enc = tokenizer([t for t, _ in rows], padding=True, return_tensors="pt")
    labels = torch.tensor([label for _, label in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(20):
        optimizer.zero_grad()
        model(**enc, labels=labels).loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> Path:
    path.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-data")
    write_tsv(root / "train.tsv", make_sentences(256, seed=1))
    write_tsv(root / "dev.tsv", make_sentences(64, seed=2))
    write_tsv(root / "test.tsv", make_sentences(64, seed=3))
    return root


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """A sentiment artifact written by the real export code (untrained tiny BERT): models_dir/tiny-sentiment."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.export.text_classification import export_classifier

    models_dir = tmp_path_factory.mktemp("models")
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_base, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    return export_classifier(model, tokenizer, models_dir, "tiny-sentiment", labels=LABELS,
                             base_model=str(tiny_base), max_length=32,
                             metrics={"test_accuracy": 0.5, "test_f1": 0.5,
                                      "split_sizes": {"train": 0, "val": 0, "test": 0}},
                             training={"note": "untrained test fixture"})


@pytest.fixture(scope="session")
def tiny_lm_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text-generation artifact (random tiny GPT-2 + ONNX KV-cache decoder): models_dir/tiny-gpt2."""
    from tests.lm_helpers import make_tiny_lm_artifact

    return make_tiny_lm_artifact(tmp_path_factory.mktemp("lm-models"))


@pytest.fixture(scope="session")
def tiny_embedding_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """A sentence-embedding artifact written by the `embedding` verb (the untrained tiny BERT's encoder, mean
    pooling, L2-normalised): models_dir/tiny-embed."""
    from training.verbs.embedding import embedding

    return embedding(str(tiny_base), name="tiny-embed", models_dir=tmp_path_factory.mktemp("embed-models"),
                     max_length=32)


@pytest.fixture(scope="session")
def tiny_chat_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text-generation artifact with a ChatML chat template (random tiny GPT-2): models_dir/tiny-chat."""
    from tests.chat_helpers import make_tiny_chat_artifact

    return make_tiny_chat_artifact(tmp_path_factory.mktemp("chat-models"))
