"""Fig. 2 of the paper: mean SDR against the negative-query weight alpha."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from omnisep.evaluation.metrics import Summary

LINE_STYLES = {"proportional": "-", "naive": "--"}
MODE_TITLES = {"proportional": "(1+α)q − α q_neg", "naive": "q − α q_neg"}


def plot_alpha_sweep(
    sweep: Mapping[tuple[str, str], Sequence[tuple[float, Summary]]],
    path: str | os.PathLike,
    title: str = "SDR against the negative-query weight α",
) -> Path:
    """Solid: proportional (paper eq. 4); dashed: naive subtraction; bands: ± SEM.

    ``sweep`` maps (query modality, negative mode) to (alpha, SDR summary) points.
    The PNG is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modalities = list(dict.fromkeys(modality for modality, _ in sweep))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(modalities)}
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    try:
        for (modality, mode), points in sweep.items():
            points = sorted(points, key=lambda point: point[0])
            alphas = np.array([alpha for alpha, _ in points], dtype=float)
            means = np.array([summary.mean for _, summary in points], dtype=float)
            sems = np.nan_to_num(np.array([summary.sem for _, summary in points], dtype=float))
            axes.plot(alphas, means, LINE_STYLES.get(mode, ":"), color=colours[modality], marker="o", markersize=3,
                      label=f"{modality}: {MODE_TITLES.get(mode, mode)}")
            axes.fill_between(alphas, means - sems, means + sems, color=colours[modality], alpha=0.15, linewidth=0)
        axes.set_xlabel("negative query weight α")
        axes.set_ylabel("mean SDR (dB), band: ± SEM")
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
        os.close(fd)
        try:
            figure.savefig(temp, format="png")
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
    finally:
        plt.close(figure)
    return path
