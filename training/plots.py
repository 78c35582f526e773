"""Training-curve PNG from the CSV logs of a run."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read_metrics(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...]} over every CSV log version of the run (a resumed run adds one)."""
    series: dict[str, dict[int, float]] = {}
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        with path.open() as fh:
            for row in csv.DictReader(fh):
                step = int(row.get("step") or 0)
                for key, value in row.items():
                    if key not in {"step", "epoch"} and value not in (None, ""):
                        series.setdefault(key, {})[step] = float(value)
    return {key: sorted(points.items()) for key, points in series.items()}


def _moving_average(values: tuple[float, ...], window: int) -> list[float]:
    return [sum(values[max(0, i - window + 1):i + 1]) / (i - max(0, i - window + 1) + 1) for i in range(len(values))]


def plot_training_curves(run_dir: Path, out: Path | None = None) -> Path:
    """Loss (train and val) and validation accuracy/F1 against the optimiser step."""
    metrics = read_metrics(run_dir)
    out = out or run_dir / "training_curve.png"
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for key, ax in (("train_loss", ax_loss), ("val_loss", ax_loss), ("val_acc", ax_acc), ("val_f1", ax_acc)):
        if metrics.get(key):
            steps, values = zip(*metrics[key], strict=True)
            if key == "train_loss":
                ax.plot(steps, values, color="tab:blue", alpha=0.25)
                values = tuple(_moving_average(values, 10))
            ax.plot(steps, values, label=key, marker="o" if key.startswith("val") else None)
    ax_loss.set(title="loss", xlabel="step")
    ax_acc.set(title="validation", xlabel="step")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_reward_and_kl(runs: dict[str, list[dict[str, float]]], out: Path, title: str = "") -> Path:
    """RLHF curves: mean reward and KL to the reference against samples seen, one line per run.

    ``runs``: {label: [{"samples", "reward", "kl"}, ...]} (e.g. one PPO run, or ours beside trl's).
    """
    fig, (ax_reward, ax_kl) = plt.subplots(1, 2, figsize=(11, 4))
    for label, points in runs.items():
        samples = [p["samples"] for p in points]
        for key, ax in (("reward", ax_reward), ("kl", ax_kl)):
            values = tuple(p[key] for p in points)
            line = ax.plot(samples, values, alpha=0.3)[0]
            ax.plot(samples, _moving_average(values, 5), color=line.get_color(), label=label)
    ax_reward.set(title="mean reward (reward model score)", xlabel="samples seen")
    ax_kl.set(title="KL to the reference (nats per continuation)", xlabel="samples seen")
    for ax in (ax_reward, ax_kl):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or out.stem)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
