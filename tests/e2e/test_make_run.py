"""`make run` itself, with a stand-in virtual environment: its `python` runs the real app, and for a training verb
publishes a tiny artifact (a copy of the test classifier) under the name the Makefile target expects, at once for the
teacher, for the others when the test lets them finish. The server answers as soon as the teacher is there (on
jemalloc where it is installed), serves each model as it lands, Ctrl-C stops the background build, and a second
`make run` reuses what was built."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import app_env, free_port
from tests.unit.test_recipes import REPO, model_targets

pytestmark = pytest.mark.skipif(shutil.which("make") is None or not Path("/proc/self/stat").exists(),
                                reason="needs GNU make and /proc")
TEACHER, STUDENT = "sentiment-minilm", "sentiment-minilm-student"
JEMALLOC = glob.glob("/usr/lib/*-linux-gnu/libjemalloc.so.2")  # what the Makefile preloads, where installed

STAND_IN = """#!{python}
import json, os, shutil, sys, time
from pathlib import Path

from contract import publish, staging_dir

if sys.argv[1:3] == ["-m", "app"]:
    os.execv({python!r}, [{python!r}, "-m", "app"])
control, verb, args = Path(os.environ["STAND_IN_CONTROL"]), sys.argv[3], sys.argv
with (control / "calls").open("a") as calls:
    calls.write(verb + "\\n")
(control / f"{{verb}}.pid").write_text(str(os.getpid()))
while verb != "sentiment" and not (control / f"{{verb}}.go").exists():
    time.sleep(0.05)
models_dir = Path(args[args.index("--output.models_dir" if "--output.models_dir" in args else "--models_dir") + 1])
name = {names!r}[verb]
stage = staging_dir(models_dir, name)
shutil.copytree({artifact!r}, stage, dirs_exist_ok=True)
manifest = json.loads((stage / "manifest.json").read_text())
(stage / "manifest.json").write_text(json.dumps({{**manifest, "name": name}}))
publish(stage, models_dir / name)
"""


@dataclass
class Run:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def models(self) -> dict[str, str]:
        body = httpx.get(f"{self.url}/v1/models", timeout=10).json()
        return {model["id"]: model["status"] for model in body["data"]}

    def allocator(self) -> str:
        """The malloc the server runs on, as the teacher's runtime reports it."""
        body = httpx.get(f"{self.url}/v1/models", timeout=10).json()
        return str(next(m for m in body["data"] if m["id"] == TEACHER)["runtime"]["allocator"])

    def wait(self, what: str, until: Any, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert self.process.poll() is None, f"make run exited:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"{what} did not happen:\n{self.log.read_text()}"
            time.sleep(0.1)

    def ctrl_c(self) -> str:
        """SIGINT to make's process group, as the terminal sends it; returns make's output once it has exited."""
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(90)
        return self.log.read_text()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def stand_in(tmp_path: Path, tiny_artifact: Path) -> Path:
    """A virtual environment for the Makefile whose `python` is the stand-in above; returns its folder."""
    names = {}
    for target in model_targets("quick", "M"):
        verb = target.command.split(" -m training ", 1)[1].split()[0]
        names[verb] = target.target.removeprefix("M/").removesuffix("/manifest.json")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(STAND_IN.format(python=sys.executable, names=names, artifact=str(tiny_artifact)))
    python.chmod(0o755)
    (venv / "bin" / "uv").touch()  # the installer is there: `install` does not create the venv
    (venv / ".installed").touch()  # newer than pyproject.toml: `install` has nothing to do
    (tmp_path / "control").mkdir()
    return venv


@contextmanager
def make_run(tmp_path: Path, venv: Path, log_name: str) -> Iterator[Run]:
    port, log, control = free_port(), tmp_path / log_name, tmp_path / "control"
    env = {**app_env(tmp_path / "models", port=str(port), models_poll_seconds="0.2"), "STAND_IN_CONTROL": str(control)}
    command = ["make", "--no-print-directory", "run", f"VENV={venv}", f"MODELS_DIR={tmp_path / 'models'}",
               f"BUILD_LOG={tmp_path / 'build.log'}"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    run = Run(f"http://127.0.0.1:{port}", process, log)
    try:
        run.wait("readiness", lambda: answers(run.url))
        yield run
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
        for pid_file in control.glob("*.pid"):
            if alive(pid := int(pid_file.read_text())):
                os.kill(pid, signal.SIGKILL)


def test_make_run_serves_while_building_and_ctrl_c_stops_the_build(tmp_path: Path, stand_in: Path) -> None:
    control, models_dir = tmp_path / "control", tmp_path / "models"
    building = ["gpt2-quick", "minilm-embed", "smollm2-135m-instruct"]
    with make_run(tmp_path, stand_in, "first.log") as run:
        assert run.models() == {TEACHER: "ready", **dict.fromkeys([STUDENT, *building], "building")}
        assert run.allocator() == ("jemalloc" if JEMALLOC else "system")
        run.wait("the distillation to start", (control / "distill.pid").exists)
        (control / "distill.go").touch()
        run.wait("the student to be served", lambda: run.models()[STUDENT] == "ready")
        answer = httpx.post(f"{run.url}/v1/sentiment", json={"text": "a fine film", "model": STUDENT}, timeout=30)
        assert answer.status_code == 200 and answer.json()["model"] == STUDENT
        run.wait("the GPT-2 build to start", (control / "lm.pid").exists)
        gpt2 = int((control / "lm.pid").read_text())
        assert alive(gpt2)
        output = run.ctrl_c()
    assert "background build stopped; finished models are kept" in output, output
    assert not alive(gpt2), "the background build survived Ctrl-C"
    assert not answers(run.url)
    assert sorted(f.name for f in models_dir.iterdir() if (f / "manifest.json").is_file()) == [TEACHER, STUDENT]
    assert "==> [models 2/5]" in (tmp_path / "build.log").read_text()

    with make_run(tmp_path, stand_in, "second.log") as run:
        assert run.models() == {TEACHER: "ready", STUDENT: "ready", **dict.fromkeys(building, "building")}
        for verb in ("lm", "import_gguf", "embedding"):
            (control / f"{verb}.go").touch()
        run.wait("every model to be served", lambda: set(run.models().values()) == {"ready"})
        run.wait("the background build to end", lambda: "background build done" in run.log.read_text())
        output = run.ctrl_c()
    assert "background build stopped" not in output
    assert (control / "calls").read_text().split() == ["sentiment", "distill", "lm", "lm", "import_gguf", "embedding"]
