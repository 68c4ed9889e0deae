"""museval vs fast-bss-eval on real model outputs: same pairs, both backends.

Runs ``omnisep evaluate`` twice on the first N mixtures of a test set, once
per metrics backend (one worker each, so the times compare), then matches
the per-item scores of the two runs and prints how far apart they are and
how fast each backend went. Unlike ``metric_speed.py`` (synthetic pairs),
these are the estimates a trained model and the oracle masks produce. The
times include the model's separations, the same in both runs.

    python benchmarks/backend_agreement.py src/omnisep/pretrained/v1 corpus/mixtures_test.jsonl \\
        --manifest corpus/manifest-default.jsonl --cache runs/default-build/cache --limit 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from omnisep.evaluation.reports import read_item_scores

METRICS = ("sdr", "sir", "sar", "si_sdr")


def evaluate(args, backend: str, out: Path) -> float:
    command = [sys.executable, "-m", "omnisep", "evaluate", str(args.checkpoint), str(args.testset), "--out", str(out),
               "--backend", backend, "--workers", "1", "--quiet", "--limit", str(args.limit)]
    command.append("--no-oracles" if args.no_oracles else "--oracles")
    for flag, value in (("--manifest", args.manifest), ("--cache", args.cache)):
        if value:
            command += [flag, str(value)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    # the run's own clock: separating and scoring, without the interpreter's start-up
    return float(json.loads((out / "summary.json").read_text(encoding="utf-8"))["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("testset", type=Path)
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--limit", type=int, default=20, help="first N mixtures")
    parser.add_argument("--no-oracles", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        seconds, scores = {}, {}
        for backend in ("fast", "museval"):
            out = Path(folder) / backend
            seconds[backend] = evaluate(args, backend, out)
            scores[backend] = read_item_scores(out / "scores.jsonl")
    if scores["fast"].keys() != scores["museval"].keys():
        sys.exit("the two runs scored different items; is the test set changing?")
    keys = sorted(scores["fast"])
    items = len(keys)

    print(f"{args.limit} mixtures, {items} scored estimates (mixture + query rows"
          f"{'' if args.no_oracles else ' + oracles'}); {platform.machine()}, {os.cpu_count()} cores, one worker each; "
          f"1-min load average at the end {os.getloadavg()[0]:.1f}")
    print()
    print("| backend | seconds (separating + scoring) | scored items/s |")
    print("|---|---|---|")
    for backend in ("museval", "fast"):
        print(f"| {backend} | {seconds[backend]:.1f} | {items / seconds[backend]:.2f} |")
    print()
    print("| metric | mean abs difference (dB) | max abs difference (dB) | mean value, museval (dB) |")
    print("|---|---|---|---|")
    for metric in METRICS:
        a = np.array([scores["museval"][k][metric] for k in keys])
        b = np.array([scores["fast"][k][metric] for k in keys])
        difference = np.abs(a - b)
        print(f"| {metric} | {difference.mean():.2e} | {difference.max():.2e} | {a.mean():.2f} |")


if __name__ == "__main__":
    main()
