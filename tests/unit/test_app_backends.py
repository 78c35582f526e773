"""Each backend on the tiny exported model, their agreement, device resolution, the shared text helpers."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from app.runtimes import DeviceError, runtime_class
from app.runtimes import torch as torch_runtime
from app.tasks.classification import Classifier as Backend
from app.tasks.classification.model import to_predictions
from app.tasks.text import TextEncoder, softmax
from contract import Artifact, load_schema, open_artifact
from tests.app_helpers import make_model

SENTENCES = ["the movie was very good .", "the plot was very bad .", "a great and warm story",
             "this film is dull and boring", "it was not fun"]


@pytest.fixture(scope="module")
def artifact(tiny_artifact: Path) -> Artifact:
    return open_artifact(tiny_artifact, load_schema())


@pytest.fixture(scope="module", params=["onnx", "torch"])
def backend(request: pytest.FixtureRequest, artifact: Artifact) -> Iterator[Backend]:
    loaded = make_model(artifact, request.param)
    loaded.load()
    loaded.warmup()
    yield loaded


def test_classify(backend: Backend) -> None:
    results = backend.classify(SENTENCES, "truncate")
    assert len(results) == len(SENTENCES)
    for result in results:
        assert result.label in ("negative", "positive")
        assert set(result.scores) == {"negative", "positive"}
        assert sum(result.scores.values()) == pytest.approx(1.0)
        assert result.score == max(result.scores.values())
        assert result.scores[result.label] == result.score
        assert result.truncated is False
    assert backend.classify(SENTENCES[1:2], "truncate")[0].scores == pytest.approx(results[1].scores, abs=1e-5)


def test_truncation_flag(backend: Backend) -> None:
    long_text = " ".join(["good"] * 100)
    short, long = backend.classify(["good", long_text], "truncate")
    assert (short.truncated, long.truncated) == (False, True)


def test_info(backend: Backend) -> None:
    info = backend.info
    assert (info["backend"], info["device"], info["threads"]) == (backend.runtime.name, "cpu", 1)
    if backend.runtime.name == "onnx":
        assert info["providers"] == ["CPUExecutionProvider"]
    else:
        assert info["dtype"] == "fp32"
        assert isinstance(backend.forward._logits, torch.jit.ScriptFunction)  # the traced graph, not the fallback
    assert info["call_overhead"] == backend.call_overhead  # measured by warmup()
    assert 1 <= backend.call_overhead <= 4096


def test_torch_and_onnx_agree(artifact: Artifact) -> None:
    engines = []
    for kind in ("onnx", "torch"):
        engine = make_model(artifact, kind)
        engine.load()
        engines.append(engine.classify(SENTENCES, "truncate"))
    onnx, torch = engines
    assert [r.label for r in onnx] == [r.label for r in torch]
    for a, b in zip(onnx, torch, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)


def test_classify_before_load(artifact: Artifact) -> None:
    with pytest.raises(RuntimeError, match="before load"):
        make_model(artifact, "onnx").classify(["x"], "truncate")


@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_device_resolution(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    engine = runtime_class(kind)
    monkeypatch.setattr(engine, "cuda_available", classmethod(lambda cls: False))
    monkeypatch.setattr(torch_runtime, "cpu_computes_bf16", lambda: False)
    assert engine.resolve_device("auto", "fp32") == "cpu"
    assert engine.resolve_device("cpu", "fp32") == "cpu"
    with pytest.raises(DeviceError, match="'cuda' requested"):
        engine.resolve_device("cuda", "fp32")
    with pytest.raises(DeviceError, match=re.escape(f"'bf16' cannot run on the {kind} runtime on cpu here (it runs "
                                                    "fp32): bf16 needs the torch runtime on cuda or on a CPU with "
                                                    "avx512_bf16")):
        engine.resolve_device("cpu", "bf16")
    monkeypatch.setattr(engine, "cuda_available", classmethod(lambda cls: True))
    assert engine.resolve_device("auto", "fp32") == "cuda"
    assert engine.resolve_device("cpu", "fp32") == "cpu"


def test_dtype_allowed_only_for_torch_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    torch_engine, onnx_engine = runtime_class("torch"), runtime_class("onnx")
    for engine in (torch_engine, onnx_engine):
        monkeypatch.setattr(engine, "cuda_available", classmethod(lambda cls: True))
    assert torch_engine.resolve_device("auto", "bf16") == "cuda"
    assert torch_engine.resolve_device("cuda", "fp16") == "cuda"
    with pytest.raises(DeviceError):
        onnx_engine.resolve_device("cuda", "fp16")


def test_torch_bf16_on_a_cpu_only_where_it_computes_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, onnx_engine = runtime_class("torch"), runtime_class("onnx")
    monkeypatch.setattr(engine, "cuda_available", classmethod(lambda cls: False))
    monkeypatch.setattr(onnx_engine, "cuda_available", classmethod(lambda cls: False))
    monkeypatch.setattr(torch_runtime, "cpu_computes_bf16", lambda: True)
    assert engine.dtypes("cpu") == ("fp32", "bf16")
    assert engine.resolve_device("auto", "bf16") == engine.resolve_device("cpu", "bf16") == "cpu"
    refused = "'fp16' cannot run on the torch runtime on cpu here (it runs fp32, bf16)"
    with pytest.raises(DeviceError, match=re.escape(refused)):
        engine.resolve_device("cpu", "fp16")
    with pytest.raises(DeviceError, match="'bf16' cannot run on the onnx runtime"):
        onnx_engine.resolve_device("cpu", "bf16")
    monkeypatch.setattr(torch_runtime, "cpu_computes_bf16", lambda: False)
    assert engine.dtypes("cpu") == ("fp32",)


def test_cpu_computes_bf16_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for avx512_bf16, amx, expected in ((True, False, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda value=avx512_bf16: value)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda value=amx: value)
        assert torch_runtime.cpu_computes_bf16() is expected


def test_unknown_runtime() -> None:
    with pytest.raises(ValueError, match="unknown runtime"):
        runtime_class("tensorrt")


def test_encoder_pads_and_flags(artifact: Artifact) -> None:
    batch = TextEncoder(artifact.hf_dir, max_length=6).encode(["good", "the movie was very good indeed ."])
    assert batch.input_ids.shape == batch.attention_mask.shape == (2, 6)
    assert batch.input_ids.dtype == np.int64
    assert batch.attention_mask[0].tolist() == [1, 1, 1, 0, 0, 0]
    assert batch.truncated == [False, True]


def test_softmax_and_predictions() -> None:
    logits = np.array([[1000.0, 0.0], [0.0, 0.0], [-1.0, 2.0]], dtype=np.float32)
    probs = softmax(logits)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.isfinite(probs).all()
    labels = ["negative", "positive"]
    results = to_predictions(logits, labels, [False, False, True])
    assert [r.label for r in results] == ["negative", "negative", "positive"]
    assert results[1].score == pytest.approx(0.5)
    assert results[2].truncated
    with pytest.raises(ValueError, match="do not match"):
        to_predictions(logits, ["only-one"], [False] * 3)


def test_torch_backend_loads_only_safetensors(artifact: Artifact, tmp_path: Path) -> None:
    """A folder whose weights are a pickle (pytorch_model.bin) is refused, never unpickled."""
    pickled = dataclasses.replace(artifact, path=tmp_path)
    hf = pickled.hf_dir
    shutil.copytree(artifact.hf_dir, hf)
    weights = hf / "model.safetensors"
    torch.save(load_file(weights), hf / "pytorch_model.bin")
    weights.unlink()
    engine = make_model(pickled, "torch")
    with pytest.raises(OSError, match="safetensors"):
        engine.load()
