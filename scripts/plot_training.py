"""Loss curves of a training run: ``metrics.jsonl`` -> PNG.

    python scripts/plot_training.py runs/default/metrics.jsonl docs/images/default-training.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main(metrics: Path, output: Path) -> None:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    validation = [r for r in rows if any(key.startswith("val") for key in r)]
    fig, ax = plt.subplots(figsize=(7, 4))
    steps, losses = map(np.array, zip(*train))
    ax.plot(steps, losses, color="0.75", lw=0.8, label="training loss (per log interval)")
    window = max(1, len(losses) // 20)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    ax.plot(steps[window - 1 :], smooth, color="k", lw=1.5, label=f"training loss ({window}-point mean)")
    keys = sorted({k for r in validation for k in r if k.startswith("val") and isinstance(r[k], (int, float))})
    for key in keys:
        points = [(r["step"], r[key]) for r in validation if key in r]
        ax.plot(*zip(*points), marker="o", label=key.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("weighted BCE")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    print(f"wrote {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
