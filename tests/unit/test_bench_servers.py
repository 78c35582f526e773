"""benchmarks/servers.py: every benchmark server runs on the allocator `make run` gives this one."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks import servers


def test_jemalloc_goes_first_in_the_preload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "malloc_library", lambda malloc: f"/lib/lib{malloc}.so.2")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert servers.allocator_env() == {"LD_PRELOAD": "/lib/libjemalloc.so.2"}
    monkeypatch.setenv("LD_PRELOAD", "/lib/other.so")
    assert servers.allocator_env() == {"LD_PRELOAD": "/lib/libjemalloc.so.2:/lib/other.so"}
    monkeypatch.setattr(servers, "malloc_library", lambda malloc: None)
    assert servers.allocator_env() == {}


def test_jemalloc_is_found_where_make_run_finds_it() -> None:
    found = servers.malloc_library("jemalloc")
    makefile = Path(servers.REPO / "Makefile").read_text()
    assert all(f"{folder}/libjemalloc.so.2" in makefile or folder.startswith("/usr/local")
               for folder in servers.MALLOC_DIRS)
    assert found is None or (Path(found).is_file() and found.endswith("libjemalloc.so.2"))


@pytest.mark.parametrize(("row_env", "expected"), [({}, "/lib/libjemalloc.so.2"), ({"LD_PRELOAD": ""}, "")])
def test_a_row_can_run_its_server_on_glibc(monkeypatch: pytest.MonkeyPatch, row_env: dict[str, str],
                                           expected: str) -> None:
    monkeypatch.setattr(servers, "malloc_library", lambda malloc: f"/lib/lib{malloc}.so.2")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    seen: dict[str, Any] = {}

    def popen(argv: list[str], env: dict[str, str], **_: Any) -> subprocess.Popen[bytes]:
        seen.update(env)
        raise RuntimeError("not started")

    monkeypatch.setattr(servers.subprocess, "Popen", popen)
    with pytest.raises(RuntimeError, match="not started"), servers.serve("x", ["true"], row_env, 1, "/"):
        pass
    assert seen["LD_PRELOAD"] == expected
