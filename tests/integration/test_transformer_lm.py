"""The from-scratch Transformer (transformer/) through the real export and the app: a tiny dense model (sinusoidal
positions) and a tiny Mixture of Experts (learned positions, 4 experts, top-2), random weights, served on both
runtimes: greedy text equal across runtimes, seeded sampling reproducible, streaming and completions, continuous
batching (prompts prefilled together, left-padded KV-cache rows) equal to decoding alone, /v1/attention from the
model's own weights (causal), with the experts' routing for the MoE only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.scheduler import Scheduler
from app.tasks.generation.generator import Generator
from app.tasks.generation.sampling import SamplingParams
from app.tasks.generation.sequence import GenerationParams
from contract import load_schema, open_artifact
from tests.app_helpers import make_model
from tests.integration.conftest import serve
from tests.integration.test_api_attention import attend, png_size
from tests.integration.test_api_generate import events
from tests.integration.test_generation_batching import PROMPTS, alone, prefills, recording, together
from tests.lm_helpers import LINES

pytestmark = pytest.mark.slow

CONTEXT = 48
MODELS: dict[str, dict[str, Any]] = {"tiny-scratch": {"position": "sinusoidal"},
                                     "tiny-scratch-moe": {"position": "learned", "n_experts": 4, "top_k": 2}}
TEXT = "The sea was calm"
KINDS = ["onnx", "torch"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from training.export.transformer_decoder import export_transformer_lm
    from training.language_model.corpus import train_tokenizer
    from transformer.model import TransformerConfig, TransformerLM

    root = tmp_path_factory.mktemp("scratch-models")
    tokenizer = train_tokenizer(LINES * 4, vocab_size=320, max_length=CONTEXT)
    for name, changes in MODELS.items():
        torch.manual_seed(0)
        config = TransformerConfig(vocab_size=len(tokenizer), context_length=CONTEXT, n_layers=2, n_heads=2,
                                   d_model=32, d_ff=64, **changes)
        export_transformer_lm(TransformerLM(config).eval(), tokenizer, root, name,
                              metrics={"perplexity": float(len(tokenizer))}, training={"note": "untrained fixture"})
    return root


@pytest.fixture(scope="module")
def clients(models_dir: Path) -> Iterator[dict[str, TestClient]]:
    with serve(models_dir, runtime="onnx", max_new_tokens=20) as onnx, serve(models_dir, runtime="torch",
                                                                             max_new_tokens=20) as torch_client:
        yield {"onnx": onnx, "torch": torch_client}


def generate(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/generate", json={"prompt": TEXT, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_manifests_record_the_architecture(models_dir: Path) -> None:
    dense, moe = (open_artifact(models_dir / name, load_schema()).manifest for name in MODELS)
    assert dense["architecture"] == {"name": "transformer-lm", "layers": 2, "heads": 2, "d_model": 32, "d_ff": 64,
                                     "position": "sinusoidal", "parameters": dense["architecture"]["parameters"],
                                     "active_parameters": dense["architecture"]["parameters"]}
    assert {key: moe["architecture"][key] for key in ("experts", "top_k", "capacity_factor")} == {
        "experts": 4, "top_k": 2, "capacity_factor": 1.25}
    assert moe["architecture"]["active_parameters"] < moe["architecture"]["parameters"]
    assert dense["onnx"]["attention_outputs"] == ["logits", "attentions"]
    assert moe["onnx"]["attention_outputs"] == ["logits", "attentions", "routing"]
    for manifest in (dense, moe):
        assert manifest["onnx"]["max_abs_diff"]["logits"] < 1e-4
        assert manifest["onnx"]["inputs"][:4] == ["input_ids", "attention_mask", "position_ids", "past_key_0"]
    config = json.loads((models_dir / "tiny-scratch-moe" / "hf" / "config.json").read_text())
    assert (config["architecture"], config["n_experts"]) == ("transformer-lm", 4)


@pytest.mark.parametrize("name", MODELS)
def test_generation_is_the_same_on_both_runtimes(clients: dict[str, TestClient], name: str) -> None:
    greedy = {kind: generate(client, model=name, max_new_tokens=12, temperature=0) for kind, client in clients.items()}
    assert greedy["onnx"]["text"] == greedy["torch"]["text"] and greedy["onnx"]["model"] == name
    assert greedy["onnx"]["usage"] == greedy["torch"]["usage"]
    sampled = {"model": name, "max_new_tokens": 12, "temperature": 1.0, "top_k": 50, "seed": 5}
    texts = {kind: generate(client, **sampled)["text"] for kind, client in clients.items()}
    assert texts["onnx"] == texts["torch"] == generate(clients["torch"], **sampled)["text"]
    assert texts["torch"] != generate(clients["torch"], **{**sampled, "seed": 6})["text"]


@pytest.mark.parametrize("kind", KINDS)
def test_streaming_and_completions(clients: dict[str, TestClient], kind: str) -> None:
    client = clients[kind]
    body = {"model": "tiny-scratch-moe", "max_new_tokens": 8, "temperature": 0.8, "seed": 3}
    stream = events(client.post("/v1/generate", json={"prompt": TEXT, **body, "stream": True}))
    assert "".join(event.get("text", "") for event in stream) == generate(client, **body)["text"]
    completion = client.post("/v1/completions", json={"model": "tiny-scratch", "prompt": TEXT, "max_tokens": 6,
                                                      "temperature": 0})
    assert completion.status_code == 200, completion.text
    assert completion.json()["choices"][0]["text"] == generate(client, model="tiny-scratch", max_new_tokens=6,
                                                               temperature=0)["text"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_batched_rows_decode_as_alone(models_dir: Path, kind: str, name: str) -> None:
    generator = make_model(open_artifact(models_dir / name, load_schema()), kind)
    assert isinstance(generator, Generator)
    generator.load()
    requests = [(prompt, GenerationParams(max_new_tokens=8 + 2 * i, sampling=SamplingParams(temperature=0)))
                for i, prompt in enumerate(PROMPTS)]
    expected = [alone(generator, prompt, params) for prompt, params in requests]
    rows, calls = recording(generator), prefills(generator)
    scheduler = Scheduler(generator, name, max_batch=8, max_queue=8, max_prefill_tokens=2048)
    assert together(scheduler, generator, requests) == expected
    scheduler.close()
    assert calls == [len(PROMPTS)] and max(rows) == len(PROMPTS)  # one left-padded prefill, then decoded together


@pytest.mark.parametrize("name", MODELS)
def test_attention_maps_and_routing(clients: dict[str, TestClient], name: str) -> None:
    bodies = {kind: attend(client, text=TEXT, model=name) for kind, client in clients.items()}
    count = len(bodies["torch"]["tokens"])
    maps = {kind: np.array(body["attentions"]) for kind, body in bodies.items()}
    for attentions in maps.values():
        assert attentions.shape == (2, 2, count, count)
        assert np.allclose(attentions.sum(axis=-1), 1.0, atol=1e-5)
        assert np.triu(attentions, k=1).max() == 0.0  # causal: no query sees a later token
    assert np.abs(maps["onnx"] - maps["torch"]).max() < 1e-4
    routing = {kind: body["routing"] for kind, body in bodies.items()}
    if name == "tiny-scratch":
        assert routing == {"onnx": None, "torch": None}
        return
    assert routing["onnx"] == routing["torch"] and routing["torch"]["layers"] == [0, 1]
    experts = np.array(routing["torch"]["experts"])
    assert experts.shape == (2, count, 2) and set(experts.ravel()) <= {0, 1, 2, 3}
    assert (experts[..., 0] != experts[..., 1]).all()  # two different experts per token
    one = attend(clients["onnx"], text=TEXT, model=name, layers=[1], heads=[0])
    assert one["routing"] == {"layers": [1], "experts": experts[[1]].tolist()}
    png = clients["torch"].get("/v1/attention.png", params={"text": TEXT, "model": name, "layer": 1, "head": 0})
    assert png.status_code == 200 and min(png_size(png.content)) >= 400


def test_the_verb_trains_a_moe_logs_its_experts_and_exports(tmp_path: Path) -> None:
    import csv

    from tests.lm_helpers import write_corpus
    from training.config import LMDataConfig, OutputConfig, TrainerConfig, TransformerModelConfig
    from training.verbs.transformer_lm import transformer_lm

    corpus = write_corpus(tmp_path / "corpus", copies=8)
    artifact = transformer_lm(
        LMDataConfig(corpus_dir=str(corpus), block_size=16, vocab_size=300, batch_size=4, eval_batch_size=8,
                     val_fraction=0.25),
        TransformerModelConfig(context_length=32, n_layers=2, n_heads=2, d_model=32, d_ff=32, n_experts=4,
                               capacity_factor=1.0, learning_rate=3e-3, warmup_steps=2, onnx=False),
        TrainerConfig(max_steps=12, val_check_interval=6, log_every_n_steps=2, threads=1),
        OutputConfig(name="moe-test", models_dir=str(tmp_path / "models"), runs_dir=str(tmp_path / "runs")))
    manifest = open_artifact(artifact, load_schema()).manifest
    metrics = manifest["metrics"]
    assert metrics["global_step"] == 12 and metrics["perplexity"] == pytest.approx(np.exp(metrics["val_loss"]))
    assert metrics["perplexity"] < 300  # below a uniform guess over the vocabulary
    loads = [metrics[f"val_expert_load_{e}"] for e in range(4)]
    assert sum(loads) == pytest.approx(1.0, abs=1e-5) and max(loads) <= metrics["val_expert_load_max"] <= 1
    assert manifest["architecture"]["experts"] == 4 and "onnx" not in manifest
    rows = list(csv.DictReader((tmp_path / "runs/moe-test/logs/version_0/metrics.csv").open()))
    dropped = [float(r["train_dropped"]) for r in rows if r.get("train_dropped")]
    aux = [float(r["train_aux_loss"]) for r in rows if r.get("train_aux_loss")]
    assert dropped and all(0 <= d < 1 for d in dropped) and aux and all(0 < a < 4 for a in aux)
    generator = make_model(open_artifact(artifact, load_schema()), "torch")
    assert type(generator).__name__ == "ScratchGenerator"
    generator.load()
    assert len(list(generator.tokens(generator.encode("The sea"), GenerationParams(max_new_tokens=3)))) >= 1
