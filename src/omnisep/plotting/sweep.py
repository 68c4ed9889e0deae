"""Fig. 2 of the paper: mean SDR against the negative-query weight alpha."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from omnisep.plotting import new_figure, save_figure

LINE_STYLES = {"proportional": "-", "naive": "--"}
MODE_TITLES = {"proportional": "(1+α)q − α q_neg", "naive": "q − α q_neg"}


def sweep_figure(sweep: Mapping[tuple[str, str], Sequence], title: str):
    """One panel per query modality: solid = proportional (eq. 4), dashed = naive subtraction; bands: ± SEM.

    ``sweep`` maps (query modality, negative mode) to (alpha, summary) points;
    a summary has ``mean`` and ``sem`` (``evaluation.metrics.Summary``).
    """
    modalities = list(dict.fromkeys(modality for modality, _ in sweep))
    figure = new_figure(4.0 * len(modalities) + 0.5, 3.6)
    axes = figure.subplots(1, len(modalities), squeeze=False)
    for panel, modality in zip(axes[0], modalities):
        for colour, mode in zip(("tab:blue", "tab:orange"), ("proportional", "naive")):
            points = sorted(sweep.get((modality, mode), []), key=lambda point: point[0])
            if not points:
                continue
            alphas = np.array([alpha for alpha, _ in points], dtype=float)
            means = np.array([summary.mean for _, summary in points], dtype=float)
            sems = np.nan_to_num(np.array([summary.sem for _, summary in points], dtype=float))
            panel.plot(alphas, means, LINE_STYLES[mode], color=colour, marker="o", markersize=3, label=MODE_TITLES[mode])
            panel.fill_between(alphas, means - sems, means + sems, color=colour, alpha=0.15, linewidth=0)
        panel.set_title(f"{modality} query")
        panel.set_xlabel("negative query weight α")
        panel.grid(True, alpha=0.3)
        panel.legend(fontsize=8)
    axes[0][0].set_ylabel("mean SDR (dB), band: ± SEM")
    figure.suptitle(title)
    return figure


def plot_alpha_sweep(
    sweep: Mapping[tuple[str, str], Sequence],
    path: str | os.PathLike,
    title: str = "SDR against the negative-query weight α",
) -> Path:
    """The sweep as a PNG, written atomically."""
    return save_figure(sweep_figure(sweep, title), path)
