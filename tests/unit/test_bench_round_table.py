"""benchmarks/round_table.py: the rows of one run's table from its steps' results, ratios to the baselines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# The scripts import their siblings by name, as they do when run as `python benchmarks/<script>.py`.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from benchmarks.round_table import classification_rows, generation_rows, markdown

LAST = "last round (abc1234)"


def _load(configs: dict[str, float], concurrency: int = 32) -> dict[str, Any]:
    rows = [{"config": name, "backend": "onnx" if "onnx" in name else "torch",
             "precision": "bf16" if "bf16" in name else "fp32", "concurrency": c, "rps": rps * c / concurrency,
             "p50_ms": 10.0, "p99_ms": 50.0, "errors": 0} for name, rps in configs.items() for c in (1, concurrency)]
    return {"reference_concurrency": concurrency, "rows": rows}


def test_classification_rows_are_the_top_concurrency_with_ratios_to_this_runs_baselines() -> None:
    this = _load({"naive": 40.0, "litserve": 100.0, "app-onnx-teacher": 160.0, "app-torch-bf16-teacher": 200.0})
    previous = _load({"app-onnx-teacher": 150.0, "app-torch-teacher": 120.0})
    rows = classification_rows(this, previous, LAST)
    assert [(r["round"], r["server"]) for r in rows] == [
        ("baseline", "naive"), ("baseline", "litserve"), ("this round", "app-onnx-teacher"),
        ("this round", "app-torch-bf16-teacher"), (LAST, "app-onnx-teacher"), (LAST, "app-torch-teacher")]
    assert all(r["concurrency"] == 32 for r in rows)
    by = {(r["round"], r["server"]): r for r in rows}
    assert by[("this round", "app-torch-bf16-teacher")]["vs_litserve"] == pytest.approx(2.0)
    assert by[("this round", "app-torch-bf16-teacher")]["precision"] == "bf16"
    assert by[(LAST, "app-torch-teacher")]["vs_naive"] == pytest.approx(3.0)
    assert by[("baseline", "litserve")]["vs_litserve"] == pytest.approx(1.0)


def _gen(mode: str, backend: str, dtype: str, c: int, tps: float) -> dict[str, Any]:
    return {"mode": mode, "backend": backend, "dtype": dtype, "concurrency": c, "model": "lm",
            "tokens_per_s": tps, "ttft_p50_ms": 100.0 / c}


def test_generation_rows_pair_1_and_8_streams_with_ratios_to_sequential_and_llama_cpp() -> None:
    this = {"rows": [_gen("sequential HF generate", "torch", "fp32", 1, 20.0),
                     _gen("server onnx c=1", "onnx", "fp32", 1, 40.0),
                     _gen("server onnx c=8", "onnx", "fp32", 8, 160.0),
                     _gen("server torch-bf16 c=8", "torch", "bf16", 8, 100.0)]}
    previous = {"rows": [_gen("sequential HF generate", "torch", "fp32", 1, 19.0),
                         _gen("server onnx c=8", "onnx", "fp32", 8, 120.0)]}
    llama = {"setup": {"model": "lm"}, "rows": [
        {"server": "llama.cpp", "concurrency": 1, "tokens_per_s": 80.0, "ttft_p50_ms": 90.0},
        {"server": "llama.cpp", "concurrency": 8, "tokens_per_s": 80.0, "ttft_p50_ms": 900.0},
        {"server": "llama.cpp default", "concurrency": 8, "tokens_per_s": 70.0, "ttft_p50_ms": 100.0},
        {"server": "ours onnx", "concurrency": 8, "tokens_per_s": 200.0, "ttft_p50_ms": 50.0}]}
    rows = generation_rows(this, previous, llama, LAST)
    by = {(r["round"], r["server"]): r for r in rows}
    assert set(by) == {("this round", "sequential HF generate"), ("this round", "/v1/generate onnx fp32"),
                       ("this round", "/v1/generate torch bf16"), (LAST, "sequential HF generate"),
                       (LAST, "/v1/generate onnx fp32"), ("baseline", "/v1/completions llama.cpp"),
                       ("this round", "/v1/completions ours onnx")}  # llama.cpp's cutting default left out
    onnx = by[("this round", "/v1/generate onnx fp32")]
    assert (onnx["tokens_per_s_1"], onnx["tokens_per_s_8"]) == (40.0, 160.0)
    assert onnx["vs_sequential_8"] == pytest.approx(8.0)
    assert onnx["vs_llama_cpp_1"] == pytest.approx(0.5) and onnx["vs_llama_cpp_8"] == pytest.approx(2.0)
    assert by[(LAST, "/v1/generate onnx fp32")]["vs_sequential_8"] == pytest.approx(120 / 19)  # its own step's
    assert by[("baseline", "/v1/completions llama.cpp")]["vs_sequential_8"] == pytest.approx(4.0)  # this round's
    table = markdown([], rows, "setup line")
    assert table.startswith("setup line")
    assert "| this round | /v1/generate onnx fp32 | 40.0 | 160.0 | 100 / 12 | 8.00 | 0.50 / 2.00 |" in table


def test_without_llama_cpp_the_ratio_to_it_is_empty() -> None:
    this = {"rows": [_gen("sequential HF generate", "torch", "fp32", 1, 20.0),
                     _gen("server onnx c=8", "onnx", "fp32", 8, 160.0)]}
    rows = generation_rows(this, None, None, LAST)
    assert [r["server"] for r in rows] == ["sequential HF generate", "/v1/generate onnx fp32"]
    assert rows[1]["vs_llama_cpp_8"] is None
