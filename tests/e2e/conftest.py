"""A real `python -m app` process on a free port, serving a models dir; stopped after the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

READY_TIMEOUT_S = 120
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
# Every host name resolves to nothing except the server's loopback address, and any proxied request goes
# to a closed port: a CDN asset could not load.
NO_NETWORK = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=127.0.0.1:9",
              "--proxy-bypass-list=127.0.0.1"]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    seconds_to_ready: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def app_env(models_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update({"APP_MODELS_DIR": str(models_dir), "APP_HOST": "127.0.0.1", "APP_THREADS": "1",
                "TOKENIZERS_PARALLELISM": "false", **{f"APP_{k.upper()}": v for k, v in settings.items()}})
    return env


@contextmanager
def _serve(workdir: Path, models_dir: Path, **settings: str) -> Iterator[Server]:
    port = free_port()
    log = workdir / f"server-{port}.log"
    started = time.monotonic()
    with log.open("wb") as out:
        env = app_env(models_dir, port=str(port), **settings)
        process = subprocess.Popen([sys.executable, "-m", "app"], cwd=workdir, stdout=out,
                                   stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            assert process.poll() is None, f"server exited with {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() - started < READY_TIMEOUT_S, f"not ready in time:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield Server(url=url, process=process, log=log, seconds_to_ready=time.monotonic() - started)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def chromium(profile: Path, *args: str) -> str:
    """Headless Chromium with the network blocked; returns its stdout (the DOM with ``--dump-dom``)."""
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", *NO_NETWORK,
               "--virtual-time-budget=20000", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture
def server_env() -> Callable[..., dict[str, str]]:
    """``server_env(models_dir, runtime="torch")`` -> environment for a `python -m app` process."""
    return app_env


@pytest.fixture
def start_server(tmp_path: Path) -> Callable[..., AbstractContextManager[Server]]:
    """``with start_server(models_dir, runtime="torch") as server:`` -> a ready `Server`."""

    def start(models_dir: Path, **settings: str) -> AbstractContextManager[Server]:
        return _serve(tmp_path, models_dir, **settings)

    return start
