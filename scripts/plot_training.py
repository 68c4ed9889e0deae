"""Loss curves of a training run: ``metrics.jsonl`` -> PNG.

    python scripts/plot_training.py runs/default/metrics.jsonl docs/images/default-training.png
"""

from __future__ import annotations

import sys

from omnisep.plotting.training import plot_training

if __name__ == "__main__":
    print(f"wrote {plot_training(sys.argv[1], sys.argv[2])}")
