"""Loss curves of a training run: ``metrics.jsonl`` -> PNG (``scripts/plot_training.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from omnisep.plotting import new_figure, save_figure


LOSS_NAMES = {"binary": "weighted BCE", "ratio": "weighted BCE (ratio targets)", "waveform": "minus thresholded SNR (dB)"}


def loss_name(metrics: str | os.PathLike) -> str:
    """What the run's loss is, from the config its checkpoints record beside ``metrics.jsonl``."""
    for name in ("last", "best"):
        config = Path(metrics).parent / name / "config.json"
        if config.is_file():
            loss = json.loads(config.read_text()).get("training", {}).get("config", {}).get("loss", {})
            return LOSS_NAMES.get(loss.get("target", "binary"), "loss")
    return LOSS_NAMES["binary"]


def training_figure(rows: list[dict], ylabel: str = LOSS_NAMES["binary"]):
    """Training loss (raw and smoothed) and every validation loss against the step."""
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    validation = [r for r in rows if any(key.startswith("val") for key in r)]
    figure = new_figure(7, 4)
    axis = figure.subplots()
    steps, losses = map(np.array, zip(*train))
    axis.plot(steps, losses, color="0.75", lw=0.8, label="training loss (per log interval)")
    window = max(1, len(losses) // 20)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    axis.plot(steps[window - 1 :], smooth, color="k", lw=1.5, label=f"training loss ({window}-point mean)")
    keys = sorted({k for r in validation for k in r if k.startswith("val") and isinstance(r[k], (int, float))})
    for key in keys:
        points = [(r["step"], r[key]) for r in validation if key in r]
        axis.plot(*zip(*points), marker="o", label=key.replace("_", " "))
    axis.set_xlabel("step")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def plot_training(metrics: str | os.PathLike, output: str | os.PathLike) -> Path:
    rows = [json.loads(line) for line in Path(metrics).read_text().splitlines() if line.strip()]
    return save_figure(training_figure(rows, loss_name(metrics)), output)
