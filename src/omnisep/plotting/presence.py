"""The scan's precision, recall and F1 against the presence threshold (docs/query-tools.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from omnisep.plotting import new_figure, save_figure

LINE_STYLES = ("-", "--")  # one per set of mixtures: validation, test
LEVELS = ("clip", "frame")


def presence_figure(curves: Mapping[str, Sequence[Mapping]], chosen: float):
    """One panel per level (clip, frame); one line style per set of mixtures; the chosen threshold dotted.

    ``curves`` maps a set's name to rows of ``evaluation.presence.score``
    (``threshold`` and, per level, ``precision``, ``recall`` and ``f1``).
    """
    figure = new_figure(10, 3.6)
    axes = figure.subplots(1, len(LEVELS), sharey=True)
    for axis, level in zip(axes, LEVELS):
        for (name, rows), style in zip(curves.items(), LINE_STYLES):
            thresholds = [row["threshold"] for row in rows]
            for measure, colour in (("precision", "tab:blue"), ("recall", "tab:orange"), ("f1", "tab:green")):
                label = f"{'F1' if measure == 'f1' else measure} ({name})"
                axis.plot(thresholds, [row[level][measure] for row in rows], style, color=colour, label=label)
        axis.axvline(chosen, color="black", lw=0.8, ls=":")
        axis.set_title(f"{level} level", fontsize=10)
        axis.set_xlabel("threshold (energy ratio)")
    axes[0].legend(fontsize=7)
    return figure


def plot_presence_curves(curves: Mapping[str, Sequence[Mapping]], chosen: float, path: str | os.PathLike) -> Path:
    """The curves as a PNG, written atomically."""
    return save_figure(presence_figure(curves, chosen), path)
