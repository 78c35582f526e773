"""One attention matrix as a PNG heatmap (matplotlib's Agg canvas, no pyplot: safe in worker threads)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def render_png(matrix: npt.NDArray[np.float32], tokens: Sequence[str], title: str) -> bytes:
    """Heatmap of ``matrix[query, key]`` with the tokens on both axes (queries down, keys across)."""
    count = len(tokens)
    if matrix.shape != (count, count):
        raise ValueError(f"matrix of shape {matrix.shape} for {count} tokens")
    side = min(16.0, max(4.5, 1.5 + 0.24 * count))
    font = max(5.0, min(10.0, 260 / max(count, 1)))
    figure = Figure(figsize=(side + 1.4, side + 0.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(matrix.max()), 1e-6))
    axes.set_xticks(range(count), labels=list(tokens), rotation=90, fontsize=font)
    axes.set_yticks(range(count), labels=list(tokens), fontsize=font)
    axes.set_xlabel("key (attended to)")
    axes.set_ylabel("query (attending)")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="attention weight")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
