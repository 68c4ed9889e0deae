"""The scan heat map: each label's evidence over time (its share of the mixture's energy, verified)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from omnisep.plotting import CMAP, check_png_path, new_figure, save_figure
from omnisep.scan import DEFAULT_THRESHOLD


def scan_figure(result, threshold: float = DEFAULT_THRESHOLD, max_labels: int = 20, title: str | None = None):
    """Time x label heat map of the most present labels of a ``scan.ScanResult``."""
    import matplotlib

    rows = result.ranking()[:max_labels]
    heat = np.ma.masked_array(
        result.evidence[rows], mask=np.broadcast_to(~result.audible, (len(rows), result.audible.size))
    )
    cmap = matplotlib.colormaps[CMAP].with_extremes(bad="#d0d0d0")  # silent frames: no evidence either way
    figure = new_figure(10, 1.2 + 0.32 * max(len(rows), 1))
    axis = figure.subplots()
    image = axis.imshow(
        heat,
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        extent=(0.0, result.times.size * result.frame_seconds, len(rows) - 0.5, -0.5),
    )
    axis.set_yticks(range(len(rows)))
    axis.set_yticklabels(
        [f"{result.labels[i]}  {result.presence[i]:.2f}{' *' if result.presence[i] >= threshold else ''}" for i in rows]
    )
    axis.set_xlabel("time (s)")
    verified = result.similarity is not None
    what = "energy share x similarity" if verified else "share of the mixture's energy"
    axis.set_title(title or f"scan: {what} per label (* present, threshold {threshold:g})")
    figure.colorbar(image, ax=axis, label="evidence" if verified else "energy ratio", pad=0.01)
    return figure


def plot_scan(
    result,
    path: str | os.PathLike,
    threshold: float = DEFAULT_THRESHOLD,
    max_labels: int = 20,
    title: str | None = None,
) -> Path:
    """The heat map as a PNG, written atomically; the folder must exist and the name end in .png."""
    path = check_png_path(path)
    return save_figure(scan_figure(result, threshold, max_labels, title), path)
