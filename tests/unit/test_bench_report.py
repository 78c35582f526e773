"""benchmarks/report.py: ratios against the baselines, target verdicts, manifest and `time -v` reading, result
files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report import (
    GIB,
    add_ratios,
    check_targets,
    int8_accuracy,
    max_rss_bytes,
    serving_markdown,
    targets_markdown,
    write_results,
)


def row(config: str, concurrency: int, rps: float, p99: float, role: str = "teacher", precision: str = "fp32",
        accuracy: float | None = 0.876) -> dict[str, Any]:
    return {"config": config, "served_as": "m", "role": role, "precision": precision, "accuracy": accuracy,
            "concurrency": concurrency, "rps": rps, "p50_ms": p99 / 2, "p99_ms": p99, "errors": 0,
            "rss_peak_bytes": 2**29, "pss_end_bytes": 2**28, "client_cpu_s": 0.4}


ROWS = [row("naive", 32, 40.0, 1000.0), row("litserve", 32, 100.0, 480.0), row("naive", 1, 30.0, 40.0),
        row("app-onnx-teacher", 32, 160.0, 300.0), row("app-onnx-teacher", 1, 90.0, 15.0),
        row("app-onnx-int8-student", 32, 400.0, 120.0, "student", "int8", 0.870),
        row("app-onnx-int8-teacher", 32, 500.0, 100.0, "teacher", "int8", 0.850)]


def test_ratios_are_against_the_baselines_at_the_same_concurrency() -> None:
    rows = {(r["config"], r["concurrency"]): r for r in add_ratios(ROWS)}
    teacher = rows[("app-onnx-teacher", 32)]
    assert teacher["rps_vs_naive"] == pytest.approx(4.0)
    assert teacher["rps_vs_litserve"] == pytest.approx(1.6)
    assert teacher["p99_vs_naive"] == pytest.approx(0.3)
    assert rows[("app-onnx-teacher", 1)]["rps_vs_naive"] == pytest.approx(3.0)
    assert rows[("app-onnx-teacher", 1)]["rps_vs_litserve"] is None  # no LitServe row at c=1
    assert rows[("naive", 32)]["rps_vs_naive"] == pytest.approx(1.0)


def test_targets_pick_the_fastest_config_within_one_accuracy_point() -> None:
    memory = {"rss_ready_bytes": GIB, "rss_peak_bytes": int(2.5 * GIB), "rss_after_bytes": GIB}
    checks = check_targets(add_ratios(ROWS), 32, teacher_accuracy=0.876, memory=memory)
    teacher, best, mem = checks
    assert teacher["ok"] is True and "4.00x naive" in teacher["measured"]
    assert best["ok"] is True and best["measured"].startswith("app-onnx-int8-student: 10.00x")  # int8 teacher: -2.6
    assert mem["ok"] is False and "2.50 GiB" in mem["measured"]
    assert "MISSED" in targets_markdown(checks) and "| met |" in targets_markdown(checks)
    assert targets_markdown([]) == ""


def test_targets_without_baselines_are_not_measured() -> None:
    rows = add_ratios([row("app-onnx-teacher", 32, 160.0, 300.0)])
    assert [c["ok"] for c in check_targets(rows, 32, 0.876, None)] == [None, None]


def test_markdown_has_one_line_per_row_with_ratios() -> None:
    table = serving_markdown(add_ratios(ROWS)).splitlines()
    assert len(table) == 2 + len(ROWS)
    assert "| app-onnx-teacher | m | 0.8760 | 32 | 160.0 |" in table[5] and "1.60x" in table[5]


def test_int8_variant_and_its_accuracy_come_from_the_manifest() -> None:
    manifest = {"onnx": {"model": "model.onnx", "variants": {"int8": {"model": "model.int8.onnx",
                                                                      "metrics": {"test_accuracy": 0.871}}}}}
    assert int8_accuracy(manifest) == (True, 0.871)
    assert int8_accuracy({"onnx": {"model": "model.onnx"}}) == (False, None)


def test_max_rss_reads_a_time_v_report() -> None:
    report = "\tCommand being timed: \"python -m training lm\"\n\tMaximum resident set size (kbytes): 1093280\n"
    assert max_rss_bytes(report) == 1093280 * 1024
    assert max_rss_bytes("Command exited with non-zero status 1\n") is None


def test_write_results_writes_the_json_and_the_table_and_prints_the_table(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    result = {"rows": [{"rps": 12.5}], "setup": {"threads": 2}}
    write_results(tmp_path / "new", "bench", result, "| a |\n|---|")
    assert json.loads((tmp_path / "new" / "bench.json").read_text()) == result
    assert (tmp_path / "new" / "bench.md").read_text() == "| a |\n|---|\n"
    assert capsys.readouterr().out == "\n| a |\n|---|\n"
