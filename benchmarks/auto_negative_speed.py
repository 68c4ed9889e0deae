"""What an automatic negative query costs, by where its labels come from.

``negative="auto"`` either scans the recording (every label of the bank
separated at once, the top ones verified by the query encoder) or separates
with the query alone and lets the encoder listen to what is left (the
residual). This times ``Separator.separate`` on the same input with no
negative, with the residual and with the scan, and prints which label each
subtracted. The input is a bundled example repeated to ``--seconds``; the
model is a real checkpoint (the default v2), so the scan's verification runs
as users get it. Each row records the 1-minute load average: on a shared
machine compare rows of one run only.

    python benchmarks/auto_negative_speed.py --seconds 60 --threads 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="v2", help="model name or folder [default: v2]")
    parser.add_argument("--example", default=str(ROOT / "examples" / "dog_and_violin.wav"))
    parser.add_argument("--text", default="dog barking")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="timings per row; the fastest is shown")
    args = parser.parse_args(argv)

    from omnisep.api import Separator
    from omnisep.audio import load_audio
    from omnisep.negatives import AutoNegative

    torch.set_num_threads(args.threads)
    separator = Separator(args.checkpoint)
    audio, rate = load_audio(args.example)
    length = int(args.seconds * rate)
    audio = np.tile(audio, (1, int(np.ceil(length / audio.shape[-1]))))[:, :length]
    separator.separate(audio[:, : 5 * rate], rate, text=args.text)  # warm-up: first-call allocations, lazy loads

    print(f"{args.seconds:g} s of {Path(args.example).name} repeated, query {args.text!r}, {args.threads} threads, "
          f"model {args.checkpoint}")
    print("| negative | seconds | x real time | subtracted | load (1 min) |")
    print("|---|---:|---:|---|---:|")
    for name, negative in (("none", None), ("auto, from the residual", AutoNegative(source="residual")),
                           ("auto, from the scan", AutoNegative(source="scan"))):
        best, result = float("inf"), None
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = separator.separate(audio, rate, text=args.text, negative=negative)
            best = min(best, time.perf_counter() - started)
        chosen = ", ".join(c.label for c in result.negatives or []) or "-"
        print(f"| {name} | {best:.2f} | {args.seconds / best:.0f} | {chosen} | {os.getloadavg()[0]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
