"""`python -m training sentiment` killed with SIGKILL mid-epoch resumes from last.ckpt when run again."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

MAX_STEPS = 64
STEPS_PER_EPOCH = 32  # 256 training rows / batch 8
EVERY = 5


def command(tiny_base: Path, tiny_data: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "training", "sentiment", "--data.data_dir", str(tiny_data),
            "--data.batch_size", "8", "--model.base_model", str(tiny_base), "--model.max_length", "32",
            "--trainer.max_steps", str(MAX_STEPS), "--trainer.max_epochs", "50", "--trainer.val_check_interval",
            "16", "--trainer.patience", "100", "--trainer.log_every_n_steps", "1", "--trainer.accelerator", "cpu",
            "--trainer.devices", "1", "--trainer.threads", "1", "--trainer.checkpoint_every_n_steps", str(EVERY),
            "--output.name", "tiny", "--output.models_dir", str(root / "models"),
            "--output.runs_dir", str(root / "runs"), "--seed", "7"]


def logged_steps(metrics_csv: Path) -> list[int]:
    lines = metrics_csv.read_text().splitlines()
    column = lines[0].split(",").index("step")
    return [int(line.split(",")[column]) for line in lines[1:]]


def test_sigkill_mid_epoch_then_rerun_resumes_and_finishes(tiny_base: Path, tiny_data: Path,
                                                            tmp_path: Path) -> None:
    argv = command(tiny_base, tiny_data, tmp_path)
    run_dir = tmp_path / "runs" / "tiny"
    last = run_dir / "checkpoints" / "last.ckpt"
    with (tmp_path / "first.log").open("wb") as out:
        first = subprocess.Popen(argv, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not last.is_file():
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no last.ckpt written in time"
            time.sleep(0.02)
    finally:
        first.kill()
    assert first.wait(timeout=30) == -9, "the first run finished before it could be killed"
    assert not (tmp_path / "models" / "tiny").exists()
    killed_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < killed_at < MAX_STEPS and killed_at % STEPS_PER_EPOCH != 0, killed_at

    second = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from {last}" in second.stderr
    rerun_log = max((run_dir / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    assert rerun_log.name != "version_0"
    assert min(logged_steps(rerun_log / "metrics.csv")) >= killed_at, "the rerun started over instead of resuming"
    assert json.loads((run_dir / "test_metrics.json").read_text())["global_step"] == MAX_STEPS
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == MAX_STEPS
    manifest = json.loads((tmp_path / "models" / "tiny" / "manifest.json").read_text())
    assert manifest["training"]["trainer"]["checkpoint_every_n_steps"] == EVERY
