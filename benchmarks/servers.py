"""Start, wait for, sample and stop server processes for the load benchmarks (one at a time, free port each).

A server runs as a child process with its output in a log file; `serve()` waits until its readiness URL
answers 200, samples the RSS of its whole process tree (LitServe runs its workers as child processes)
in a background thread, and on exit terminates the tree (children included) and reports peak and last RSS.
Every server (this one, LitServe, the naive one, llama.cpp's) runs on jemalloc where it is installed, as `make run`
and the image run this one; a row's ``LD_PRELOAD=`` (empty) runs it on glibc's malloc.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
MALLOC_LIBRARIES = {"jemalloc": "libjemalloc.so.2", "tcmalloc": "libtcmalloc_minimal.so.4"}
MALLOC_DIRS = ("/usr/lib/*-linux-gnu", "/usr/lib", "/usr/local/lib")
"""Where `make run` (MALLOC_LIB) and the image find jemalloc, in that order."""


def malloc_library(malloc: str) -> str | None:
    """The installed shared library of ``malloc`` (jemalloc, tcmalloc) to preload, None where it is not installed."""
    name = MALLOC_LIBRARIES[malloc]
    return next((str(path) for folder in MALLOC_DIRS for path in sorted(Path("/").glob(f"{folder[1:]}/{name}"))),
                None)


def allocator_env() -> dict[str, str]:
    """``LD_PRELOAD`` of jemalloc for a server process (before any preload of this process's environment)."""
    library = malloc_library("jemalloc")
    if library is None:
        return {}
    inherited = os.environ.get("LD_PRELOAD")
    return {"LD_PRELOAD": f"{library}:{inherited}" if inherited else library}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree_sum(process: psutil.Process, read: Callable[[psutil.Process], int]) -> int:
    """``read`` summed over a process and all its descendants (processes that vanish count 0)."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += read(proc)
        except psutil.Error:
            continue
    return total


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process tree (shared pages counted once per process)."""
    return _tree_sum(process, lambda proc: int(proc.memory_info().rss))


def tree_pss(process: psutil.Process) -> int:
    """Proportional set size of a process tree: shared pages split between the processes sharing them."""
    return _tree_sum(process, lambda proc: int(proc.memory_full_info().pss))


class RssSampler(threading.Thread):
    """Samples `tree_rss` every ``interval_s`` seconds; keeps the peak and the latest value."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.process, self.interval_s = psutil.Process(pid), interval_s
        self.peak = self.last = 0
        self._stop_event = threading.Event()

    def sample(self) -> int:
        try:
            self.last = tree_rss(self.process)
        except psutil.Error:
            return self.last
        self.peak = max(self.peak, self.last)
        return self.last

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Server:
    """A running server: its base URL, seconds from start to ready, its RSS when ready and its RSS sampler."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    ready_s: float
    rss_ready: int
    rss: RssSampler
    log: Path


def stop_tree(process: subprocess.Popen[bytes], grace_s: float = 20) -> None:
    """Terminate a process we started and every descendant it started (by pid), then kill what is left."""
    try:
        procs = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    process.wait(timeout=grace_s)


def _answers(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def serve(name: str, argv: list[str], env: dict[str, str], port: int, ready_path: str,
          timeout_s: float = 600, cwd: Path = REPO) -> Iterator[Server]:
    """Run ``argv`` (listening on ``port``) in ``cwd`` until the block ends; ready when GET ``ready_path`` is 200.
    `python -m app` run in another checkout's root (``cwd``) serves that checkout's ``app``: the working directory
    comes first on ``sys.path``."""
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
    with log.open("wb") as sink:
        began = time.perf_counter()
        process = subprocess.Popen(argv, env={**os.environ, **allocator_env(), **env}, stdout=sink,
                                   stderr=subprocess.STDOUT, cwd=cwd)
    clean = False
    try:
        with httpx.Client(base_url=url, timeout=2) as client:
            while not _answers(client, ready_path):
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}; log {log}:\n"
                                       f"{log.read_text(errors='replace')[-3000:]}")
                if time.perf_counter() - began > timeout_s:
                    raise RuntimeError(f"{name} not ready in {timeout_s:.0f} s; log {log}")
                time.sleep(0.2)
        sampler = RssSampler(process.pid)
        sampler.sample()
        sampler.start()
        try:
            yield Server(name=name, url=url, process=process, ready_s=time.perf_counter() - began,
                         rss_ready=sampler.last, rss=sampler, log=log)
            clean = True
        finally:
            sampler.stop()
            sampler.sample()
    finally:
        stop_tree(process)
        if clean:
            log.unlink(missing_ok=True)


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start `py-spy record` on ``pid`` and its children for ``seconds``, writing a flame graph SVG to ``out``."""
    beside = Path(sys.executable).parent / "py-spy"
    exe = str(beside) if beside.is_file() else "py-spy"
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                             "--format", "flamegraph", "--output", str(out), "--subprocesses", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def app_argv() -> list[str]:
    return [sys.executable, "-m", "app"]


def app_env(models_dir: Path, port: int, backend: str, threads: int, extra: dict[str, str]) -> dict[str, str]:
    """Environment of `python -m app` for one benchmark row (``extra`` wins: e.g. APP_DEVICE=cuda)."""
    return {"APP_MODELS_DIR": str(models_dir), "APP_BACKEND": backend, "APP_THREADS": str(threads),
            "APP_HOST": "127.0.0.1", "APP_PORT": str(port), "APP_LOG_LEVEL": "WARNING",
            "TOKENIZERS_PARALLELISM": "false", **extra}


@contextmanager
def linked_models(models_dir: Path, names: list[str]) -> Iterator[Path]:
    """A temporary models dir holding symlinks to only ``names`` (so the server loads nothing else)."""
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        for name in names:
            (Path(tmp) / name).symlink_to((models_dir / name).resolve(), target_is_directory=True)
        yield Path(tmp)


def git_revision(root: Path) -> str | None:
    """The commit checked out in ``root`` (None outside a git checkout), to say which code a server ran."""
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def machine_info() -> dict[str, object]:
    """CPU, memory and library versions of this machine, for the results file."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    packages = {}
    for package in ("torch", "transformers", "onnxruntime", "fastapi", "uvicorn", "litserve"):
        try:
            packages[package] = version(package)
        except PackageNotFoundError:
            packages[package] = None
    return {"cpu": cpu, "cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_at_start": os.getloadavg(), "packages": packages,
            "server_malloc": malloc_library("jemalloc") or "glibc"}
