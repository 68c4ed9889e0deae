"""SDRi of live separation against its latency (``benchmarks/live.py --plot``)."""

from __future__ import annotations

import os
from pathlib import Path

from omnisep.plotting import new_figure, save_figure


def live_figure(points: list[tuple[float, float, str]], offline: float):
    """``points``: (latency ms, SDRi dB, label) of the live settings; ``offline``: the offline SDRi."""
    figure = new_figure(6, 3.6)
    axis = figure.subplots()
    main = sorted((x, y) for x, y, label in points if label == "")
    axis.plot(*zip(*main), marker="o", color="k", label="live (hop: half the latency; 48 ms at 96 ms)")
    for x, y, label in points:
        if label:
            axis.plot([x], [y], marker="s", linestyle="none", label=f"live, {label}")
    axis.axhline(offline, color="tab:blue", linestyle="--", label="offline (whole clip)")
    axis.set_xscale("log")
    axis.set_xlabel("latency (ms)")
    axis.set_ylabel("SDRi (dB)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def plot_live(points: list[tuple[float, float, str]], offline: float, output: str | os.PathLike) -> Path:
    return save_figure(live_figure(points, offline), output)
