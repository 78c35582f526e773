"""Pure helpers of the benchmarks: manifest and `time -v` reading, ratios against the baselines, target checks,
markdown tables, charts, result files, agreement of greedy continuations."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

GIB = 2**30
BASELINES = ("naive", "litserve")


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with req/s and p99 relative to the naive and LitServe rows at the same concurrency."""
    base = {(r["config"], r["concurrency"]): r for r in rows if r["config"] in BASELINES}
    out = []
    for row in rows:
        naive, lit = base.get(("naive", row["concurrency"])), base.get(("litserve", row["concurrency"]))
        out.append(row | {
            "rps_vs_naive": _ratio(row["rps"], naive and naive["rps"]),
            "rps_vs_litserve": _ratio(row["rps"], lit and lit["rps"]),
            "p99_vs_naive": _ratio(row["p99_ms"], naive and naive["p99_ms"])})
    return out


def int8_accuracy(manifest: dict[str, Any]) -> tuple[bool, float | None]:
    """Whether the artifact has an int8 ONNX variant (`onnx.variants.int8`, schema 1.3), and its test accuracy."""
    variant = manifest.get("onnx", {}).get("variants", {}).get("int8")
    if variant is None:
        return False, None
    return True, variant.get("metrics", {}).get("test_accuracy")


def max_rss_bytes(report: str) -> int | None:
    """'Maximum resident set size (kbytes)' of a `/usr/bin/time -v` report, in bytes (None if absent)."""
    found = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", report)
    return int(found.group(1)) * 1024 if found else None


def _check(target: str, measured: str, ok: bool | None) -> dict[str, Any]:
    return {"target": target, "measured": measured, "ok": ok}


def _fmt(value: float | None, suffix: str = "x") -> str:
    return "n/a" if value is None else f"{value:.2f}{suffix}"


def check_targets(rows: list[dict[str, Any]], concurrency: int, teacher_accuracy: float | None,
                  memory: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's serving targets at ``concurrency`` (rows must carry `add_ratios` fields); ok None = not measured."""
    at = [r for r in rows if r["concurrency"] == concurrency and r["config"] not in BASELINES]
    checks = []
    for row in (r for r in at if r["role"] == "teacher" and r["precision"] == "fp32"):
        speed, lit, p99 = row["rps_vs_naive"], row["rps_vs_litserve"], row["p99_vs_naive"]
        ok = None if None in (speed, lit, p99) else speed >= 3 and lit >= 1.5 and p99 <= 0.5
        checks.append(_check(f"{row['config']} (teacher fp32) at c={concurrency}: >= 3x naive req/s, >= 1.5x "
                             "LitServe, p99 <= 0.5x naive",
                             f"{_fmt(speed)} naive, {_fmt(lit)} LitServe, p99 {_fmt(p99)} naive", ok))
    eligible = [r for r in at if teacher_accuracy is None or r["accuracy"] is None
                or r["accuracy"] >= teacher_accuracy - 0.01]
    best = max(eligible, key=lambda r: r["rps"], default=None)
    if best is not None:
        speed = best["rps_vs_naive"]
        acc = "n/a" if best["accuracy"] is None else f"{best['accuracy']:.4f}"
        checks.append(_check(f"best config at c={concurrency} (accuracy within 1 point of the teacher): "
                             ">= 8x naive req/s", f"{best['config']}: {_fmt(speed)} naive, accuracy {acc}",
                             None if speed is None else speed >= 8))
    if memory is not None:
        worst = max(memory["rss_ready_bytes"], memory["rss_peak_bytes"], memory["rss_after_bytes"])
        growth = memory["rss_after_bytes"] - memory["rss_ready_bytes"]
        checks.append(_check("every model loaded and warmed: RSS <= 2 GiB", f"peak {worst / GIB:.2f} GiB, "
                             f"after load {growth / 2**20:+.0f} MiB vs ready", worst <= 2 * GIB))
    return checks


def targets_markdown(checks: Sequence[dict[str, Any]]) -> str:
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    if not checks:
        return ""
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {c['target']} | {c['measured']} | {verdict[c['ok']]} |" for c in checks]
    return "\n".join(lines)


def serving_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One line per config x concurrency: throughput, latency, errors, memory, client CPU and the ratios."""
    lines = ["| config | model | acc. | c | req/s | p50 ms | p99 ms | errors | RSS peak MiB | PSS MiB | client CPU s "
             "| req/s vs naive | req/s vs LitServe | p99 vs naive |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"
             "---:|---:|---:|---:|---:|"]
    for r in rows:
        acc = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        lines.append(f"| {r['config']} | {r['served_as']} | {acc} | {r['concurrency']} | {r['rps']:.1f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['rss_peak_bytes'] / 2**20:.0f} | "
                     f"{r['pss_end_bytes'] / 2**20:.0f} | "
                     f"{r['client_cpu_s']:.2f} | {_fmt(r['rps_vs_naive'])} | {_fmt(r['rps_vs_litserve'])} | "
                     f"{_fmt(r['p99_vs_naive'])} |")
    return "\n".join(lines)


def grouped_bars(rows: Sequence[dict[str, Any]], panels: Sequence[tuple[str, str, bool]], group: str, series: str,
                 title: str, out: Path) -> None:
    """One panel per (field, title, log scale): bars of ``field`` per ``group`` value, one colour per ``series``."""
    groups = list(dict.fromkeys(r[group] for r in rows))
    names = list(dict.fromkeys(r[series] for r in rows))
    width = 0.8 / max(1, len(names))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.0, 1.1 * len(groups) * len(panels) + 3), 4.8),
                             squeeze=False)
    for ax, (key, panel_title, log) in zip(axes[0], panels, strict=True):
        for i, name in enumerate(names):
            by_group = {r[group]: r[key] for r in rows if r[series] == name}
            xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
            bars = ax.bar(xs, [by_group.get(g, 0.0) or 0.0 for g in groups], width, label=str(name))
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_xticks(range(len(groups)), [str(g) for g in groups], rotation=20, ha="right", fontsize=8)
        ax.set_title(panel_title)
        if log:
            ax.set_yscale("log")
    handles, labels = axes[0][0].get_legend_handles_labels()
    columns = min(len(names), 4)
    fig.legend(handles, labels, title=series, fontsize=8, loc="lower center", ncol=columns)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 + 0.06 * -(-len(names) // columns), 1, 1))
    fig.savefig(out, dpi=100)
    plt.close(fig)


def write_results(out: Path, name: str, result: dict[str, Any], table: str) -> None:
    """Write ``out/<name>.json`` (every figure of the run) and ``out/<name>.md`` (its table), then print the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(table + "\n")
    print("\n" + table)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens two sequences share before their first difference."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def greedy_agreement(reference: Sequence[Sequence[int]], other: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Agreement of two sets of greedy continuations of the same prompts: the tokens identical before the first
    difference over the longer of each pair (a shorter or longer continuation counts as disagreement), the
    continuations identical throughout, and the median position of the first difference (among those that
    differ; None when none does)."""
    if len(reference) != len(other):
        raise ValueError(f"{len(reference)} reference continuations, {len(other)} others")
    shared = [common_prefix(a, b) for a, b in zip(reference, other, strict=True)]
    longest = sum(max(len(a), len(b)) for a, b in zip(reference, other, strict=True))
    differing = sorted(s for s, a, b in zip(shared, reference, other, strict=True) if list(a) != list(b))
    return {"tokens_identical": sum(shared) / longest if longest else 1.0,
            "continuations_identical": len(reference) - len(differing), "continuations": len(reference),
            "first_difference_median": statistics.median(differing) if differing else None}
