"""`training embedding` end to end on a tiny BERT: the artifact opens under the contract, and ORT's embeddings are
transformers' last hidden states mean-pooled over the attention mask and L2-normalised."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizerFast

import contract
from tests.conftest import WORDS
from training.export import sentence_embedding
from training.export.onnx_graph import OPSET, ExportError
from training.verbs.embedding import embedding

pytestmark = pytest.mark.slow

MAX_LENGTH = 32
SENTENCES = ["the movie was very good .", "boring", "the plot was dull and the actors were bad . " * 6, "a", ""]


def make_encoder(path: Path) -> Path:
    """A random tiny plain BertModel (architectures: BertModel, as all-MiniLM-L6-v2), a word-level tokenizer and
    the sentence-transformers module files of all-MiniLM-L6-v2 (Transformer, mean Pooling, Normalize)."""
    torch.manual_seed(1)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ".", ","]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=True)
    config = BertConfig(vocab_size=len(tokens), hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=48, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 24, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(base folder, artifact folder) of the verb run on the tiny encoder."""
    root = tmp_path_factory.mktemp("embedding")
    base = make_encoder(root / "base")
    return base, embedding(str(base), name="tiny-embed", models_dir=root / "models", max_length=MAX_LENGTH)


def transformers_reference(hf: Path, texts: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mean of the last hidden state over the attention mask, L2-normalised, with plain transformers."""
    tokenizer = AutoTokenizer.from_pretrained(hf)
    model = AutoModel.from_pretrained(hf).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), p=2, dim=1)
    return pooled.numpy(), {name: batch[name].numpy().astype(np.int64) for name in ("input_ids", "attention_mask")}


def test_the_artifact_opens_and_its_manifest_says_what_it_computes(exported: tuple[Path, Path]) -> None:
    base, folder = exported
    artifact = contract.open_artifact(folder)  # schema-valid, every size and sha256 verified
    artifact.require("model.onnx", "hf/tokenizer.json", "hf/config.json", "hf/model.safetensors")
    manifest = artifact.manifest
    assert artifact.task == manifest["task"] == contract.SENTENCE_EMBEDDING
    assert manifest["schema_version"] == contract.SCHEMA_VERSION
    assert (manifest["name"], manifest["base_model"], manifest["max_length"]) == ("tiny-embed", str(base), MAX_LENGTH)
    block = manifest["embedding"]
    assert (block["dimension"], block["pooling"], block["normalize"]) == (24, "mean", True)
    assert 0.0 <= block["max_abs_diff_reference"] <= 1e-5
    onnx = manifest["onnx"]
    assert {key: onnx[key] for key in ("model", "inputs", "outputs", "opset")} == {
        "model": "model.onnx", "inputs": ["input_ids", "attention_mask"], "outputs": ["embeddings"], "opset": OPSET}
    assert set(onnx["max_abs_diff"]) == {"embeddings"} and onnx["max_abs_diff"]["embeddings"] <= 1e-5
    assert manifest["metrics"] == {}
    assert manifest["training"] == {"base_model": str(base), "name": "tiny-embed",
                                    "models_dir": str(folder.parent), "max_length": MAX_LENGTH,
                                    "distributed": {"world_size": 1, "strategy": None,
                                                    "note": "no training: a pretrained encoder exported in one "
                                                            "process"}}
    assert json.loads((folder / "hf" / "config.json").read_text())["architectures"] == ["BertModel"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny-embed"]  # no staging leftovers


def test_ort_embeddings_are_the_transformers_mean_pool_with_unit_norm(exported: tuple[Path, Path]) -> None:
    _, folder = exported
    want, feed = transformers_reference(folder / "hf", SENTENCES)
    assert feed["input_ids"].shape[1] == MAX_LENGTH  # the long sentence was truncated, the others padded
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["embeddings"], feed)[0]
    assert got.shape == (len(SENTENCES), 24) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    for row in range(len(SENTENCES)):  # alone and unpadded: the same vector as in the padded batch
        length = int(feed["attention_mask"][row].sum())
        alone = {name: value[row:row + 1, :length] for name, value in feed.items()}
        np.testing.assert_allclose(session.run(["embeddings"], alone)[0][0], got[row], rtol=0, atol=1e-5)


def test_a_failed_reference_check_fails_the_export_and_publishes_nothing(
        exported: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = exported
    monkeypatch.setattr(sentence_embedding, "REFERENCE_ATOL", -1.0)
    with pytest.raises(ExportError, match="transformers reference"):
        embedding(str(base), name="refused", models_dir=tmp_path / "models", max_length=MAX_LENGTH)
    assert list((tmp_path / "models").iterdir()) == []


def test_the_cli_verb_writes_the_artifact(exported: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = exported
    argv = [sys.executable, "-m", "training", "embedding", "--base_model", str(base), "--name", "cli-embed",
            "--models_dir", str(tmp_path / "models"), "--max_length", "16"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    artifact = contract.open_artifact(tmp_path / "models" / "cli-embed")
    assert (artifact.task, artifact.max_length) == (contract.SENTENCE_EMBEDDING, 16)


def test_the_tiny_embedding_fixture_is_a_valid_artifact(tiny_embedding_artifact: Path) -> None:
    artifact = contract.open_artifact(tiny_embedding_artifact)
    assert (artifact.name, artifact.task, artifact.max_length) == ("tiny-embed", contract.SENTENCE_EMBEDDING, 32)
    assert artifact.manifest["embedding"]["dimension"] == 32
