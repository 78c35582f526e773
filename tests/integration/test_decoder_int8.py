"""The int8 variant of a KV-cache decoder: written by `training quantize` with its perplexity and agreement
against the fp32 graph, served as `<name>-int8` (and as `<name>` with APP_ONNX_VARIANT=int8)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from app.runtimes import create_runtime
from app.tasks import TASKS
from contract import open_artifact, sha256_file
from tests.integration.conftest import serve
from tests.lm_helpers import CONTEXT, LINES, make_tiny_lm_artifact
from training.export.int8 import INT8
from training.verbs.quantize import quantize

pytestmark = pytest.mark.slow

PROMPT = "The sea was calm and"


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory, tiny_lm_artifact: Path) -> Path:
    """A copy of the tiny GPT-2 artifact with its int8 decoder, measured on the fixture's own lines."""
    root = tmp_path_factory.mktemp("decoder-int8")
    artifact = Path(shutil.copytree(tiny_lm_artifact, root / "models" / tiny_lm_artifact.name))
    text = root / "text.txt"
    text.write_text("\n".join(LINES * 4))
    assert quantize(artifact, text=text, text_tokens=100, threads=1) == artifact
    return artifact


def test_quantize_writes_the_decoder_variant_with_its_measurements(quantized: Path, tiny_lm_artifact: Path) -> None:
    before = json.loads((tiny_lm_artifact / "manifest.json").read_text())
    manifest = open_artifact(quantized).manifest  # schema-valid, every size and checksum right
    variant = manifest["onnx"]["variants"]["int8"]
    assert variant["model"] == INT8 and manifest["files"][INT8]["sha256"] == sha256_file(quantized / INT8)
    assert variant["quantization"]["method"] == "MatMulNBits" and variant["quantization"]["bits"] == 8
    metrics = variant["metrics"]
    assert metrics["split_sizes"] == {"evaluated_tokens": 99}
    # an untrained model: perplexity near its vocabulary size, both graphs alike
    assert 1 < metrics["fp32_perplexity"] < 2 * 320
    assert metrics["perplexity"] == pytest.approx(metrics["fp32_perplexity"], rel=0.05)
    assert metrics["fp32_next_token_agreement"] >= 0.8
    for name, entry in before["files"].items():
        assert manifest["files"][name] == entry, name
    assert (manifest["created_at"], manifest["metrics"]) == (before["created_at"], before["metrics"])
    assert sorted(p.name for p in quantized.parent.iterdir()) == [quantized.name]  # no staging leftovers


def test_export_writes_the_decoder_variant_too(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text(" ".join(LINES))
    artifact = make_tiny_lm_artifact(tmp_path / "models", int8=text)
    manifest = open_artifact(artifact).manifest
    metrics = manifest["onnx"]["variants"]["int8"]["metrics"]
    assert INT8 in manifest["files"] and 100 < metrics["split_sizes"]["evaluated_tokens"] < 512
    assert metrics["fp32_perplexity"] == pytest.approx(metrics["perplexity"], rel=0.05)


def test_import_gguf_writes_the_decoder_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The verb's own path from a loaded GGUF model to the artifact (the GGUF reading stubbed: a tiny GPT-2)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from training.language_model.causal_lm import gpt2_config
    from training.language_model.corpus import train_tokenizer
    from training.verbs import import_gguf as verb

    tokenizer = train_tokenizer(LINES * 4, vocab_size=320, max_length=CONTEXT)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**gpt2_config("tiny", len(tokenizer), CONTEXT, int(tokenizer.eos_token_id))))
    load_model, load_tokenizer = verb.AutoModelForCausalLM.from_pretrained, verb.AutoTokenizer.from_pretrained
    monkeypatch.setattr(verb.AutoModelForCausalLM, "from_pretrained",  # only the GGUF is stubbed, not the export's
                        lambda *args, **kwargs: model if "gguf_file" in kwargs else load_model(*args, **kwargs))
    monkeypatch.setattr(verb.AutoTokenizer, "from_pretrained",
                        lambda *args, **kwargs: tokenizer if "gguf_file" in kwargs else load_tokenizer(*args, **kwargs))
    text = tmp_path / "text.txt"
    text.write_text(" ".join(LINES))
    gguf = tmp_path / "tiny.gguf"
    with pytest.raises(FileNotFoundError, match="--int8 null"):
        verb.import_gguf(gguf, name="tiny-gguf", models_dir=tmp_path / "models", context_length=CONTEXT,
                         int8=tmp_path / "missing.txt")
    artifact = verb.import_gguf(gguf, name="tiny-gguf", models_dir=tmp_path / "models", context_length=CONTEXT,
                                int8=text)
    variant = open_artifact(artifact).manifest["onnx"]["variants"]["int8"]
    assert variant["model"] == INT8 and (artifact / INT8).is_file() and variant["metrics"]["perplexity"] > 1


def test_quantize_refuses_a_decoder_without_onnx(tmp_path: Path) -> None:
    artifact = make_tiny_lm_artifact(tmp_path, onnx=False)
    with pytest.raises(ValueError, match="no ONNX graph to quantise"):
        quantize(artifact)


def generate(client: Any, model: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/generate", json={"prompt": PROMPT, "model": model, "max_new_tokens": 8,
                                                 "temperature": 0, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_the_app_serves_the_int8_decoder_beside_fp32(quantized: Path) -> None:
    metrics = open_artifact(quantized).manifest["onnx"]["variants"]["int8"]["metrics"]
    with serve(quantized.parent, max_new_tokens=20) as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert set(models) == {"tiny-gpt2", "tiny-gpt2-int8"}
        assert models["tiny-gpt2"]["runtime"]["variant"] == "fp32"
        assert (models["tiny-gpt2-int8"]["status"], models["tiny-gpt2-int8"]["runtime"]["variant"]) == ("ready", "int8")
        assert models["tiny-gpt2-int8"]["metrics"]["perplexity"] == metrics["perplexity"]
        fp32, int8 = generate(client, "tiny-gpt2"), generate(client, "tiny-gpt2-int8")
        assert int8["model"] == "tiny-gpt2-int8" and int8["usage"]["completion_tokens"] >= 1
        assert fp32["usage"]["prompt_tokens"] == int8["usage"]["prompt_tokens"]
        streamed = client.post("/v1/generate", json={"prompt": PROMPT, "model": "tiny-gpt2-int8", "stream": True,
                                                     "max_new_tokens": 4, "temperature": 0})
        assert streamed.status_code == 200, streamed.text
        final = json.loads(streamed.text.strip().split("\n\n")[-1].removeprefix("data: "))
        assert (final["model"], final["finish_reason"], final["usage"]["completion_tokens"]) == (
            "tiny-gpt2-int8", "length", 4)
        # the variant has no attention graph of its own: it answers from the fp32 one, the same maps
        maps = [client.post("/v1/attention", json={"text": PROMPT, "model": name}).json()
                for name in ("tiny-gpt2", "tiny-gpt2-int8")]
        assert maps[0]["attentions"] == maps[1]["attentions"] and maps[0]["tokens"] == maps[1]["tokens"]


def test_onnx_variant_setting_serves_the_int8_decoder_under_the_plain_name(quantized: Path) -> None:
    with serve(quantized.parent, onnx_variant="int8") as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert models["tiny-gpt2"]["runtime"]["variant"] == "int8"
        assert generate(client, "tiny-gpt2")["text"] == generate(client, "tiny-gpt2-int8")["text"]
    with serve(quantized.parent, runtime="torch") as client:
        assert [m["name"] for m in client.get("/v1/models").json()["models"]] == ["tiny-gpt2"]


def test_the_int8_decoder_asked_for_attention_first_builds_the_shared_graph(quantized: Path) -> None:
    """The variant builds its attention forward by asking the fp32 model for its own, under the same lock: asked
    first (nothing built yet) it must not wait on itself."""
    artifact = open_artifact(quantized)
    fp32 = TASKS[artifact.task].create(artifact, create_runtime("onnx", "cpu", 1, "fp32"))
    fp32.load()
    int8 = fp32.with_variant("int8")
    answers: list[Any] = []
    worker = threading.Thread(target=lambda: answers.append(int8.attend(PROMPT, 64)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the int8 decoder's first attention request never returned"
    assert answers[0].tokens == fp32.attend(PROMPT, 64).tokens


def test_serve_variants_false_serves_the_int8_decoder_alone(quantized: Path, opened_graphs: list[str]) -> None:
    with serve(quantized.parent, onnx_variant="int8", serve_variants=False) as client:
        models = client.get("/v1/models").json()["models"]
        assert [(m["name"], m["runtime"]["variant"]) for m in models] == [("tiny-gpt2", "int8")]
        assert opened_graphs == [INT8]  # no fp32 decoder; the attention graph only when a map is asked for
        assert generate(client, "tiny-gpt2")["usage"]["completion_tokens"] == 8
        maps = client.post("/v1/attention", json={"text": PROMPT, "model": "tiny-gpt2"})
        assert maps.status_code == 200, maps.text
        assert opened_graphs == [INT8, "model.attn.onnx"]
