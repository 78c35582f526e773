"""`training lm` end to end on a tiny corpus, and the exported decoder: ORT == PyTorch, greedy and seeded."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from app.tasks.generation.generator import GenerationParams, Generator
from app.tasks.generation.sampling import SamplingParams
from contract import SCHEMA_VERSION, load_schema, open_artifact
from tests.app_helpers import make_model
from tests.lm_helpers import write_corpus
from training.config import LMDataConfig, LMModelConfig, OutputConfig, TrainerConfig
from training.verbs.lm import lm

pytestmark = pytest.mark.slow


def loaded(artifact: Path, kind: str) -> Generator:
    generator = make_model(open_artifact(artifact, load_schema()), kind)
    generator.load()
    return generator


def test_lm_trains_logs_perplexity_and_exports(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", copies=8)
    artifact = lm(LMDataConfig(corpus_dir=str(corpus), block_size=16, vocab_size=300, batch_size=4,
                               eval_batch_size=8, val_fraction=0.25),
                  LMModelConfig(preset="tiny", context_length=32, learning_rate=3e-3, warmup_steps=2),
                  TrainerConfig(max_steps=12, val_check_interval=6, log_every_n_steps=2, threads=1),
                  OutputConfig(name="lm-test", models_dir=str(tmp_path / "models"), runs_dir=str(tmp_path / "runs")))
    manifest = open_artifact(artifact).manifest
    assert manifest["task"] == "text-generation" and manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["generation"]["context_length"] == 32 and manifest["generation"]["eos_token_id"] == 0
    assert manifest["onnx"]["max_abs_diff"]["logits"] < 1e-3
    assert manifest["onnx"]["attention"] == "model.attn.onnx"
    assert manifest["onnx"]["max_abs_diff"]["attentions"] < 1e-4
    metrics = manifest["metrics"]
    assert metrics["global_step"] == 12 and metrics["split_sizes"]["val_documents"] == 2
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["val_loss"]))
    assert metrics["perplexity"] < 300  # below a uniform guess over the vocabulary: it learned something
    rows = list(csv.DictReader((tmp_path / "runs/lm-test/logs/version_0/metrics.csv").open()))
    losses = [float(r["train_loss"]) for r in rows if r.get("train_loss")]
    assert len(losses) >= 3 and losses[-1] < losses[0]
    assert [r["val_ppl"] for r in rows if r.get("val_ppl")]
    assert {"hf/model.safetensors", "hf/tokenizer.json", "model.onnx", "model.attn.onnx", "training_curve.png"} <= set(
        json.loads((artifact / "manifest.json").read_text())["files"])


def test_greedy_tokens_identical_on_torch_and_onnx(tiny_lm_artifact: Path) -> None:
    torch_gen, onnx_gen = loaded(tiny_lm_artifact, "torch"), loaded(tiny_lm_artifact, "onnx")
    greedy = GenerationParams(max_new_tokens=16, sampling=SamplingParams(temperature=0))
    for prompt in ("Call me", "The sea was calm and the whale rose"):
        ids = torch_gen.encode(prompt)
        assert list(torch_gen.tokens(ids, greedy)) == list(onnx_gen.tokens(ids, greedy))
    np.testing.assert_allclose(torch_gen._prefill([ids])[0], onnx_gen._prefill([ids])[0], atol=1e-4)


def test_seeded_sampling_is_reproducible_and_backend_independent(tiny_lm_artifact: Path) -> None:
    torch_gen, onnx_gen = loaded(tiny_lm_artifact, "torch"), loaded(tiny_lm_artifact, "onnx")
    ids = torch_gen.encode("The captain")
    params = GenerationParams(max_new_tokens=12, seed=42, sampling=SamplingParams(top_k=40, top_p=0.9))
    first = list(torch_gen.tokens(ids, params))
    assert first == list(torch_gen.tokens(ids, params)) == list(onnx_gen.tokens(ids, params))
    other = GenerationParams(max_new_tokens=12, seed=43, sampling=SamplingParams(top_k=40, top_p=0.9))
    assert first != list(torch_gen.tokens(ids, other))


def test_context_window_bounds_generation(tiny_lm_artifact: Path) -> None:
    gen = loaded(tiny_lm_artifact, "onnx")
    ids = gen.encode("the sea " * 60)[: gen.context_length - 3]
    chunks = list(gen.stream(ids, GenerationParams(max_new_tokens=20, sampling=SamplingParams(temperature=0))))
    assert chunks[-1].completion_tokens <= 3
