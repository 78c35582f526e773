"""Training across processes: the sentiment verb under DDP (2 CPU processes, gloo, started by Lightning) and the lm
verb under torchrun, end to end; and how the datamodules shard the classifier's examples (with their cached teacher
logits) and the language model's packed blocks between ranks."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from contract import open_artifact
from tests.conftest import LABELS
from tests.lm_helpers import write_corpus
from training.classification.data import TextClassificationDataModule, read_examples
from training.config import DataConfig, LMDataConfig
from training.language_model.corpus import CorpusDataModule, read_corpus, split_documents, train_tokenizer
from training.verbs.distill import predict_logits

REPO = Path(__file__).resolve().parents[2]
WORLD = 2


def run_training(argv: list[str], cwd: Path, timeout_s: int = 240) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    began = time.perf_counter()
    result = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout_s)
    return result, time.perf_counter() - began


def shares_of(loaders: list[Any]) -> list[list[int]]:
    """One epoch of each rank's batch sampler: the example indices each rank gets, batch by batch."""
    return [[i for batch in loader.batch_sampler for i in batch] for loader in loaders]


def assert_partition(shares: list[list[int]], n: int) -> None:
    assert sorted(i for share in shares for i in share) == list(range(n)), "an example was repeated or lost"
    assert all(shares), "a rank got nothing"


@pytest.fixture
def classification(tiny_base: Path, tiny_data: Path) -> TextClassificationDataModule:
    datamodule = TextClassificationDataModule(DataConfig(data_dir=str(tiny_data), batch_size=16, eval_batch_size=24),
                                              AutoTokenizer.from_pretrained(tiny_base), 32, seed=7)
    datamodule.setup()
    return datamodule


def test_cached_teacher_logits_reach_exactly_one_rank_with_their_example(
        classification: TextClassificationDataModule, tiny_base: Path) -> None:
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_base).eval()
    train = classification.splits["train"]
    train.extras["teacher_logits"] = predict_logits(teacher, train, 0, 64)  # what distill caches
    train.extras["index"] = list(range(len(train)))
    loaders = [classification.loader("train", True, rank, WORLD) for rank in range(WORLD)]
    epochs = []
    for _ in range(2):
        seen: list[list[int]] = [[] for _ in range(WORLD)]
        steps = []
        for rank, loader in enumerate(loaders):
            batches = list(loader)
            steps.append(len(batches))
            for batch in batches:
                seen[rank] += batch["index"].tolist()
                with torch.no_grad():
                    fresh = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                torch.testing.assert_close(batch["teacher_logits"], fresh, atol=1e-5, rtol=1e-4)
        assert steps[0] == steps[1] == len(loaders[0]) == 8  # 256 examples, 16 a batch, 2 ranks
        assert_partition(seen, len(train))
        epochs.append(seen)
    assert epochs[0][0] != epochs[1][0], "the second epoch repeated the first one's shares"


@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluation_batches_are_split_without_overlap(classification: TextClassificationDataModule,
                                                      split: str) -> None:
    loaders = [classification.loader(split, False, rank, WORLD) for rank in range(WORLD)]
    shares = shares_of(loaders)
    assert_partition(shares, len(classification.splits[split]))
    assert len(loaders[0]) == len(loaders[1])


def test_language_model_blocks_are_split_between_ranks(tmp_path: Path) -> None:
    docs = read_corpus(write_corpus(tmp_path / "corpus", copies=8), "**/*.txt", None, seed=3)
    train_texts, val_texts = split_documents(docs, 0.25)
    cfg = LMDataConfig(block_size=16, batch_size=4, eval_batch_size=8)
    datamodule = CorpusDataModule(cfg, train_tokenizer(train_texts, 300, 32), train_texts, val_texts, seed=3)
    datamodule.setup()
    assert datamodule.train is not None and datamodule.val is not None
    train = [datamodule.loader("train", rank, WORLD) for rank in range(WORLD)]
    first, second = shares_of(train), shares_of(train)  # two epochs
    for shares in (first, second):
        assert_partition(shares, len(datamodule.train))
        assert len(train[0]) == len(train[1])
    assert first != second, "the blocks were not reshuffled for the second epoch"
    assert_partition(shares_of([datamodule.loader("val", rank, WORLD) for rank in range(WORLD)]),
                     len(datamodule.val))
    fresh = datamodule.loader("train", 1, WORLD)
    indices = next(iter(datamodule.loader("train", 1, WORLD).batch_sampler))
    assert torch.equal(next(iter(fresh))[0], datamodule.train[indices])  # the loader yields those very blocks


@pytest.mark.slow
def test_sentiment_trains_under_ddp_on_two_cpu_processes(tiny_base: Path, tiny_data: Path, tmp_path: Path) -> None:
    models, runs = tmp_path / "models", tmp_path / "runs"
    result, seconds = run_training([
        "-m", "training", "sentiment", "--data.data_dir", str(tiny_data), "--data.batch_size", "16",
        "--data.eval_batch_size", "32", "--model.base_model", str(tiny_base), "--model.max_length", "32",
        "--model.learning_rate", "3e-3", "--model.warmup_ratio", "0.1", "--trainer.max_steps", "48",
        "--trainer.max_epochs", "50", "--trainer.val_check_interval", "8", "--trainer.patience", "50",
        "--trainer.log_every_n_steps", "4", "--trainer.threads", "1", "--trainer.strategy", "ddp",
        "--trainer.devices", str(WORLD), "--trainer.accelerator", "cpu", "--output.name", "tiny-ddp",
        "--output.models_dir", str(models), "--output.runs_dir", str(runs), "--output.int8", "false", "--seed", "7",
    ], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    print(f"DDP sentiment run: {seconds:.1f} s")
    artifact = open_artifact(models / "tiny-ddp")  # schema and every checksum
    manifest = artifact.manifest
    distributed = manifest["training"]["distributed"]
    assert distributed["world_size"] == WORLD and distributed["strategy"] == "ddp"
    assert distributed["process_group_backend"] == "gloo" and distributed["devices_per_node"] == WORLD
    assert "All distributed processes registered. Starting with 2 processes" in output
    assert "rank 1 of 2: training done; rank 0 exports the artifact" in output
    assert output.count("[2/2] exporting") == 1, "a rank other than 0 exported"
    metrics = manifest["metrics"]
    assert metrics["global_step"] == 48 and metrics["split_sizes"] == {"train": 256, "val": 64, "test": 64}
    assert metrics["test_accuracy"] >= 0.9
    # each rank went through half of the 16 batches per epoch: 48 steps are 6 epochs, not 3
    rows = list(csv.DictReader((runs / "tiny-ddp" / "logs" / "version_0" / "metrics.csv").open()))
    assert max(int(r["epoch"]) for r in rows if r.get("train_loss")) == 5
    # the synchronised test metrics are those of the whole test split, recomputed here in one process
    model = AutoModelForSequenceClassification.from_pretrained(artifact.hf_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(artifact.hf_dir)
    examples = read_examples(tiny_data / "test.tsv", "sentence", "label", LABELS)
    encoded = tokenizer([e.text for e in examples], padding=True, truncation=True, max_length=32,
                        return_tensors="pt")
    labels = torch.tensor([e.label for e in examples])
    with torch.no_grad():
        logits = model(**encoded).logits
    assert metrics["test_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), abs=1e-4)
    assert metrics["test_accuracy"] == pytest.approx(float((logits.argmax(-1) == labels).float().mean()))


@pytest.mark.slow
def test_language_model_trains_under_torchrun(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", copies=8)
    models, runs = tmp_path / "models", tmp_path / "runs"
    result, seconds = run_training([
        "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD), "-m", "training", "lm",
        "--config", str(REPO / "training" / "configs" / "distributed" / "ddp-cpu.yaml"),
        "--data.corpus_dir", str(corpus), "--data.block_size", "16", "--data.vocab_size", "300",
        "--data.batch_size", "4", "--data.eval_batch_size", "8", "--data.val_fraction", "0.25",
        "--model.preset", "tiny", "--model.context_length", "32", "--model.learning_rate", "3e-3",
        "--model.warmup_steps", "2", "--model.onnx", "false", "--trainer.max_steps", "12",
        "--trainer.val_check_interval", "6", "--trainer.log_every_n_steps", "2", "--output.name", "lm-ddp",
        "--output.models_dir", str(models), "--output.runs_dir", str(runs), "--seed", "5",
    ], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    print(f"torchrun lm run: {seconds:.1f} s")
    artifact = open_artifact(models / "lm-ddp")
    distributed = artifact.manifest["training"]["distributed"]
    assert distributed["world_size"] == WORLD and distributed["strategy"] == "ddp"
    assert output.count("[3/3] exporting") == 1
    assert output.count("trained a byte-level BPE tokenizer") == 1, "more than one rank trained the tokenizer"
    # the held-out loss is the mean over every validation block, though each rank saw only half of them
    docs = read_corpus(corpus, "**/*.txt", None, seed=5)
    train_texts, val_texts = split_documents(docs, 0.25)
    tokenizer = AutoTokenizer.from_pretrained(artifact.hf_dir)
    datamodule = CorpusDataModule(LMDataConfig(block_size=16), tokenizer, train_texts, val_texts)
    datamodule.setup()
    assert datamodule.val is not None
    model = AutoModelForCausalLM.from_pretrained(artifact.hf_dir).eval()
    with torch.no_grad():
        losses = [float(model(input_ids=block[None], labels=block[None]).loss) for block in datamodule.val]
    assert len(losses) > 8  # more blocks than one validation batch: both ranks had some
    assert artifact.manifest["metrics"]["val_loss"] == pytest.approx(sum(losses) / len(losses), abs=1e-4)
