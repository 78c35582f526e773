"""Which malloc the process runs on, as /v1/models reports it: read from the libraries mapped into it."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.runtimes.base import allocator

GLIBC = "7f3a1c000000-7f3a1c022000 r--p 00000000 08:01 1234 /usr/lib/x86_64-linux-gnu/libc.so.6\n"


@pytest.mark.parametrize(("library", "expected"), [
    ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "jemalloc"),
    ("/usr/local/lib/libjemalloc.so.2", "jemalloc"),
    ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10", "tcmalloc"),
    ("/usr/lib/aarch64-linux-gnu/libmimalloc.so.2.0", "mimalloc"),
])
def test_a_preloaded_malloc_is_named_by_its_library(tmp_path: Path, library: str, expected: str) -> None:
    maps = tmp_path / "maps"
    maps.write_text(f"7f3a1b000000-7f3a1b200000 r-xp 00000000 08:01 99 {library}\n{GLIBC}")
    assert allocator(maps) == expected


def test_glibc_alone_is_the_system_malloc(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(GLIBC + "7f3a1d000000-7f3a1d100000 r-xp 00000000 08:01 7 /opt/venv/lib/jemalloc_notes.py\n")
    assert allocator(maps) == "system"


def test_without_proc_it_is_the_system_malloc(tmp_path: Path) -> None:
    assert allocator(tmp_path / "no-such-maps") == "system"
