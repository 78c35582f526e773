"""Run `wrk` (the compiled HTTP load generator) against a POST JSON endpoint and parse what it measured.

    from wrk import run_wrk
    result = run_wrk("http://127.0.0.1:8000/v1/sentiment", [{"text": "fine"}, {"text": "dull"}],
                     duration_s=20, connections=32)

A Lua script rotates the given bodies (one request each, in order, wrapping around), counts response
statuses (2xx, 429, 503, other) per wrk thread, and its `done()` prints one `WRK_JSON {...}` line with
requests, duration, latency percentiles, the status mix and wrk's socket errors. The CPU time the wrk
process used comes from its rusage (`os.wait4`), so a report can say how much CPU the client took.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MARKER = "WRK_JSON "

LUA = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bodies = {}
  for line in io.lines(args[1]) do
    if #line > 0 then
      bodies[#bodies + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, line)
    end
  end
  index, s2xx, s429, s503, sother = 0, 0, 0, 0, 0
end

function request()
  index = index % #bodies + 1
  return bodies[index]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status == 429 then s429 = s429 + 1
  elseif status == 503 then s503 = s503 + 1
  else sother = sother + 1 end
end

function done(summary, latency, requests)
  local c = {s2xx = 0, s429 = 0, s503 = 0, sother = 0}
  for _, thread in ipairs(threads) do
    for key, _ in pairs(c) do c[key] = c[key] + thread:get(key) end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "latency_us": {"p50": %.1f, "p90": %.1f, ' ..
    '"p99": %.1f, "mean": %.1f, "max": %.1f}, "status": {"2xx": %d, "429": %d, "503": %d, "other": %d}, ' ..
    '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, c.s2xx, c.s429, c.s503, c.sother,
    e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass
class WrkResult:
    """One wrk run: throughput, latency (ms), status mix and the client's CPU seconds."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    status: dict[str, int]
    socket_errors: dict[str, int]
    client_cpu_s: float = 0.0
    connections: int = 0

    @property
    def errors(self) -> int:
        """Responses that were not 2xx plus requests that failed at the socket (connect/read/write/timeout)."""
        return sum(v for k, v in self.status.items() if k != "2xx") + sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"errors": self.errors}


def parse_wrk_output(stdout: str, client_cpu_s: float = 0.0, connections: int = 0) -> WrkResult:
    """The `WrkResult` from the `WRK_JSON` line the Lua `done()` printed; ValueError when there is none."""
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise ValueError(f"no {MARKER.strip()} line in wrk output:\n{stdout[-2000:]}")
    data = json.loads(lines[-1][len(MARKER):])
    duration_s = data["duration_us"] / 1e6
    latency = {key: value / 1000 for key, value in data["latency_us"].items()}
    return WrkResult(requests=data["requests"], duration_s=duration_s,
                     rps=data["requests"] / duration_s if duration_s > 0 else 0.0,
                     p50_ms=latency["p50"], p90_ms=latency["p90"], p99_ms=latency["p99"], mean_ms=latency["mean"],
                     max_ms=latency["max"], status=data["status"], socket_errors=data["socket_errors"],
                     client_cpu_s=client_cpu_s, connections=connections)


def run_wrk(url: str, bodies: list[dict[str, Any]] | list[str], duration_s: float, connections: int,
            threads: int = 1, timeout_s: float = 10.0, executable: str = "wrk") -> WrkResult:
    """Load ``url`` with POSTs of ``bodies`` (dicts are JSON-encoded) for ``duration_s`` seconds, closed loop."""
    lines = [b if isinstance(b, str) else json.dumps(b, ensure_ascii=False) for b in bodies]
    if not lines or any("\n" in line for line in lines):
        raise ValueError("bodies must be a non-empty list of one-line JSON documents")
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        script, body_file, out = Path(tmp) / "post.lua", Path(tmp) / "bodies.jsonl", Path(tmp) / "stdout.txt"
        script.write_text(LUA)
        body_file.write_text("\n".join(lines) + "\n")
        argv = [executable, f"-t{threads}", f"-c{max(connections, threads)}", f"-d{max(1, round(duration_s))}s",
                f"--timeout={max(1, round(timeout_s))}s", "-s", str(script), url, "--", str(body_file)]
        with out.open("wb") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        text = out.read_text(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{text[-2000:]}")
    return parse_wrk_output(text, client_cpu_s=usage.ru_utime + usage.ru_stime, connections=connections)
