"""benchmarks/wrk.py: parsing what the Lua `done()` prints (no wrk process is started)."""

from __future__ import annotations

import json

import pytest

from benchmarks.wrk import LUA, MARKER, parse_wrk_output, run_wrk

DONE = {"requests": 600, "duration_us": 20_000_000, "bytes": 123456,
        "latency_us": {"p50": 25_000.0, "p90": 40_000.0, "p99": 95_500.0, "mean": 27_000.0, "max": 120_000.0},
        "status": {"2xx": 590, "429": 6, "503": 3, "other": 1},
        "socket_errors": {"connect": 0, "read": 2, "write": 0, "timeout": 1}}


def wrk_stdout(data: dict[str, object]) -> str:
    return ("Running 20s test @ http://127.0.0.1:8000/v1/sentiment\n  1 threads and 32 connections\n"
            f"{MARKER}{json.dumps(data)}\n")


def test_parse_converts_units_and_counts_errors() -> None:
    result = parse_wrk_output(wrk_stdout(DONE), client_cpu_s=1.5, connections=32)
    assert result.requests == 600 and result.duration_s == pytest.approx(20.0)
    assert result.rps == pytest.approx(30.0)
    assert (result.p50_ms, result.p90_ms, result.p99_ms, result.max_ms) == pytest.approx((25.0, 40.0, 95.5, 120.0))
    assert result.status["429"] == 6 and result.socket_errors["read"] == 2
    assert result.errors == 6 + 3 + 1 + 2 + 1
    assert result.as_dict()["errors"] == result.errors
    assert result.client_cpu_s == 1.5 and result.connections == 32


def test_parse_without_the_marker_line_fails() -> None:
    with pytest.raises(ValueError, match="WRK_JSON"):
        parse_wrk_output("Running 20s test\nunable to connect to 127.0.0.1:1 Connection refused\n")


def test_the_lua_report_names_every_field_the_parser_reads() -> None:
    for key in ("requests", "duration_us", "latency_us", "p50", "p90", "p99", "status", "2xx", "429", "503",
                "other", "socket_errors", "timeout"):
        assert f'"{key}"' in LUA
    assert LUA.count("WRK_JSON ") == 1 and MARKER == "WRK_JSON "


@pytest.mark.parametrize("bodies", [[], ["{\"text\": \"a\"}\n{\"text\": \"b\"}"]])
def test_bodies_must_be_one_line_json_documents(bodies: list[str]) -> None:
    with pytest.raises(ValueError, match="one-line"):
        run_wrk("http://127.0.0.1:9/v1/sentiment", bodies, duration_s=1, connections=1)
