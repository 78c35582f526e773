"""ONNX Runtime tuning: session options from the settings, the IO-binding path, thread coordination."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from app.runtimes.onnx import session_options
from app.settings import Settings
from contract import load_schema, open_artifact
from tests.app_helpers import make_model


def test_session_options() -> None:
    options = session_options(3)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert options.enable_cpu_mem_arena and not options.enable_mem_pattern
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_io_binding_gives_the_same_logits(tiny_artifact: Path) -> None:
    """The CUDA path (IO binding) run on the CPU provider: same logits as a plain run."""
    backend = make_model(open_artifact(tiny_artifact, load_schema()), "onnx")
    backend.load()
    assert backend.forward.session.get_session_options().intra_op_num_threads == 1
    ids = np.array([[2, 7, 9, 3, 0], [2, 11, 12, 13, 3]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": mask}
    runtime, session = backend.runtime, backend.forward.session
    bound, plain = runtime.run_bound(session, ["logits"], feed)[0], runtime.run(session, ["logits"], feed)[0]
    np.testing.assert_allclose(bound, plain, atol=1e-6)
    assert backend.info["variant"] == "fp32" and backend.variants() == []


def test_threads_default_to_the_cpus_shared_by_concurrent_inferences(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_THREADS", raising=False)
    cpus = len(os.sched_getaffinity(0))
    assert Settings(_env_file=None).max_concurrency == min(2, cpus)
    assert Settings(_env_file=None).threads == max(1, cpus // min(2, cpus))
    assert Settings(_env_file=None, max_concurrency=1).threads == cpus
    assert Settings(_env_file=None, max_concurrency=2).threads == max(1, cpus // 2)
    assert Settings(_env_file=None, max_concurrency=2, threads=5).threads == 5
