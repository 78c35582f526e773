"""Soak: load one server at about twice its capacity for a long time and watch its memory.

    python benchmarks/soak.py --duration 600                    # starts `python -m app` on models/sentiment-minilm
    python benchmarks/soak.py --url http://127.0.0.1:8000       # a running server (RSS when its pid is found)

Capacity comes from a short closed-loop `wrk` ramp (1, 2, 4, ... connections, --ramp-s each) that stops when
throughput grows by less than 10 %; the soak then runs wrk with twice the connections of the best step (or
--connections), in segments of --interval seconds. After each segment the server's RSS (its process tree,
psutil) is sampled. wrk is a closed loop, so load beyond capacity shows as queueing latency or as 429s.
Writes benchmarks/results/soak.json and soak.png (RSS and throughput over time) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
from servers import REPO, Server, app_argv, app_env, free_port, linked_models, machine_info, serve, tree_rss
from wrk import WrkResult, run_wrk

from training.classification.data import read_examples
from training.config import DEFAULT_DATA_ROOT

MIB = 2**20
FALLBACK_TEXTS = ["A warm, funny and beautifully acted film.", "Dull and far too long.",
                  "The plot never comes together, but the actors are wonderful.", "I would not watch it again."]


def texts(limit: int = 200) -> list[str]:
    """SST-2 test sentences when the data is there, else a few built-in ones."""
    path = DEFAULT_DATA_ROOT / "sst2" / "test.tsv"
    if not path.is_file():
        return FALLBACK_TEXTS
    return [ex.text for ex in read_examples(path, "sentence", "label", ["negative", "positive"])][:limit]


def listening_pid(url: str) -> int | None:
    """The pid listening on the URL's port on this machine (None when it cannot be told)."""
    port = urlsplit(url).port or 80
    try:
        return next((c.pid for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid), None)
    except psutil.AccessDenied:
        return None


def rss_mb(process: psutil.Process | None) -> float | None:
    return round(tree_rss(process) / MIB, 1) if process is not None else None


def calibrate(url: str, bodies: list[dict[str, Any]], ramp_s: float, max_connections: int,
              timeout_s: float) -> tuple[int, list[dict[str, Any]]]:
    """Connections of the best ramp step (throughput stops growing by 10 %), and every step."""
    steps: list[dict[str, Any]] = []
    best: WrkResult | None = None
    connections = 1
    while connections <= max_connections:
        result = run_wrk(url, bodies, ramp_s, connections, threads=min(2, connections), timeout_s=timeout_s)
        steps.append({"connections": connections, "rps": round(result.rps, 1), "p50_ms": result.p50_ms,
                      "p99_ms": result.p99_ms, "status": result.status})
        print(f"  ramp c={connections}: {result.rps:.1f} req/s, p50 {result.p50_ms:.1f} ms", flush=True)
        if best is not None and result.rps < best.rps * 1.1:
            break
        best = result if best is None or result.rps > best.rps else best
        connections *= 2
    assert best is not None
    return best.connections, steps


def soak(url: str, bodies: list[dict[str, Any]], connections: int, duration_s: float, interval_s: float,
         timeout_s: float, process: psutil.Process | None) -> list[dict[str, Any]]:
    """wrk in segments of ``interval_s`` for ``duration_s``; one timeline point (and RSS sample) per segment."""
    timeline: list[dict[str, Any]] = []
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < duration_s - 0.5:
        segment = min(interval_s, duration_s - elapsed)
        result = run_wrk(url, bodies, segment, connections, threads=min(2, connections), timeout_s=timeout_s)
        point = {"t_s": round(time.monotonic() - began, 1), "requests": result.requests, "rps": round(result.rps, 1),
                 "status": result.status, "socket_errors": result.socket_errors, "p50_ms": result.p50_ms,
                 "p99_ms": result.p99_ms, "max_ms": result.max_ms, "rss_mb": rss_mb(process)}
        timeline.append(point)
        print(f"  t={point['t_s']:6.0f}s {result.rps:7.1f} req/s  2xx {result.status['2xx']:6d}  "
              f"429 {result.status['429']:6d}  p99 {result.p99_ms:8.1f} ms  RSS {point['rss_mb']} MiB", flush=True)
    return timeline


def summarize(timeline: list[dict[str, Any]], rss_start: float | None, rss_peak: float | None) -> dict[str, Any]:
    status = {key: sum(p["status"][key] for p in timeline) for key in timeline[0]["status"]}
    sockets = {key: sum(p["socket_errors"][key] for p in timeline) for key in timeline[0]["socket_errors"]}
    requests, seconds = sum(p["requests"] for p in timeline), timeline[-1]["t_s"]
    rss = [p["rss_mb"] for p in timeline if p["rss_mb"] is not None]
    return {
        "requests": requests, "rps": round(requests / seconds, 1) if seconds else 0.0, "status": status,
        "socket_errors": sockets,
        "latency_ms": {"p50_median_of_segments": statistics.median(p["p50_ms"] for p in timeline),
                       "p99_worst_segment": max(p["p99_ms"] for p in timeline),
                       "max": max(p["max_ms"] for p in timeline)},
        "rss_mib": {"start": rss_start, "end": rss[-1] if rss else None,
                    "max": max([*rss, *([rss_peak] if rss_peak else [])], default=None),
                    "growth": round(rss[-1] - rss_start, 1) if rss and rss_start is not None else None},
    }


def plot(timeline: list[dict[str, Any]], rss_start: float | None, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p["t_s"] for p in timeline]
    fig, (memory, throughput) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    memory.plot([0.0, *t], [rss_start, *(p["rss_mb"] for p in timeline)], marker="o", markersize=3)
    memory.set_ylabel("server RSS (MiB)")
    memory.set_title("soak: memory and throughput per segment")
    throughput.plot(t, [p["rps"] for p in timeline], label="all responses")
    throughput.plot(t, [p["rps"] * p["status"]["2xx"] / max(p["requests"], 1) for p in timeline], label="2xx")
    throughput.set_ylabel("requests / s")
    throughput.set_ylim(bottom=0)
    throughput.set_xlabel("seconds")
    throughput.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def print_table(report: dict[str, Any]) -> None:
    totals, rss, latency = report["totals"], report["totals"]["rss_mib"], report["totals"]["latency_ms"]
    rows = [("duration", f"{report['duration_s']:.0f} s at {report['connections']} connections "
                         f"(capacity step: {report['capacity']['connections']})"),
            ("requests", f"{totals['requests']} ({totals['rps']} req/s)"),
            ("status", ", ".join(f"{k}: {v}" for k, v in totals["status"].items())),
            ("socket errors", ", ".join(f"{k}: {v}" for k, v in totals["socket_errors"].items())),
            ("latency", f"p50 {latency['p50_median_of_segments']:.1f} ms (median of segments), "
                        f"p99 {latency['p99_worst_segment']:.1f} ms (worst segment), max {latency['max']:.1f} ms"),
            ("RSS (MiB)", f"start {rss['start']}, end {rss['end']}, max {rss['max']}, growth {rss['growth']}")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (default: start `python -m app` here)")
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--model", default="sentiment-minilm", help="the model the server loads and the load uses")
    parser.add_argument("--backend", default="onnx", choices=["onnx", "torch"])
    parser.add_argument("--threads", type=int, default=1, help="APP_THREADS of the started server")
    parser.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE", help="more APP_* settings")
    parser.add_argument("--duration", type=float, default=600, help="seconds of soak")
    parser.add_argument("--interval", type=float, default=10, help="seconds per segment (one RSS sample each)")
    parser.add_argument("--ramp-s", type=float, default=5, help="seconds per capacity ramp step")
    parser.add_argument("--max-connections", type=int, default=64, help="largest ramp step")
    parser.add_argument("--connections", type=int, help="skip the ramp and use this many connections")
    parser.add_argument("--timeout", type=float, default=30, help="wrk's per-request timeout, seconds")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bodies = [{"text": text, "model": args.model} for text in texts()]
    started_here = args.url is None
    links: AbstractContextManager[Path | None] = (linked_models(args.models_dir, [args.model]) if started_here
                                                  else nullcontext(None))
    with links as models:
        running: AbstractContextManager[Server | None] = nullcontext(None)
        if models is not None:
            port = free_port()
            extra = dict(item.split("=", 1) for item in args.server_env)
            running = serve("soak", app_argv(), app_env(models, port, args.backend, args.threads, extra), port,
                            "/health/ready")
        with running as server:
            url = server.url if server is not None else args.url.rstrip("/")
            pid = server.process.pid if server is not None else listening_pid(url)
            process = psutil.Process(pid) if pid is not None else None
            probe = httpx.post(f"{url}/v1/sentiment", json=bodies[0], timeout=60)
            if probe.status_code != 200:
                raise SystemExit(f"probe request answered {probe.status_code}: {probe.text[:500]}")
            rss_start = rss_mb(process)
            target = f"{url}/v1/sentiment"
            print(f"soak of {target} (pid {pid}, RSS {rss_start} MiB); capacity ramp:", flush=True)
            capacity, steps = ((args.connections // 2 or 1, []) if args.connections else
                               calibrate(target, bodies, args.ramp_s, args.max_connections, args.timeout))
            connections = args.connections or 2 * capacity
            print(f"soak: {connections} connections for {args.duration:.0f} s", flush=True)
            timeline = soak(target, bodies, connections, args.duration, args.interval, args.timeout, process)
            peak = round(server.rss.peak / MIB, 1) if server is not None else None
    report = {"finished_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine_info(),
              "url": "started here" if started_here else args.url, "model": args.model, "pid_found": pid is not None,
              "backend": args.backend if started_here else None, "threads": args.threads if started_here else None,
              "duration_s": timeline[-1]["t_s"], "interval_s": args.interval, "connections": connections,
              "capacity": {"connections": capacity, "ramp": steps},
              "totals": summarize(timeline, rss_start, peak), "timeline": timeline}
    (args.out / "soak.json").write_text(json.dumps(report, indent=2))
    plot(timeline, rss_start, args.out / "soak.png")
    print_table(report)
    print(f"wrote {args.out / 'soak.json'} and {args.out / 'soak.png'}")


if __name__ == "__main__":
    main()
