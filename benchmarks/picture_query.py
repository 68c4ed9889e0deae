"""What recognising a picture query costs: the image head v2 (Lite0) against the picture recogniser (Lite2 + Lite0).

    python benchmarks/picture_query.py [--repeats 10] [--threads 2]

Loads each once (untimed warm-up), then times recognising one bundled example
picture ``--repeats`` times in this process (the encoder's feature memo is
cleared before each, so every run pays the backbones). Prints a table of median
milliseconds per picture. Compare only within one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

PICTURE = Path(__file__).resolve().parents[1] / "examples" / "queries" / "playing-violin.png"


def main() -> None:
    from omnisep.encoders.bundled import BundledEncoder
    from omnisep.query_aug import picture_recogniser

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    encoder = BundledEncoder()
    rows = []
    for name, recogniser in (("image head v2 (Lite0)", encoder.with_heads("v2")), ("picture recogniser (Lite2 + Lite0, 3 heads)", picture_recogniser(encoder))):
        started = time.perf_counter()
        recogniser.embed("image", [PICTURE])
        first = time.perf_counter() - started
        times = []
        for _ in range(args.repeats):
            if encoder.feature_memo is not None:
                encoder.feature_memo.clear()
            started = time.perf_counter()
            recogniser.embed("image", [PICTURE])
            times.append(time.perf_counter() - started)
        rows.append((name, first * 1000, statistics.median(times) * 1000))
    print(f"| recognises the picture with | first call, ms (loads the backbone) | then, ms per picture ({args.threads} threads) |")
    print("|---|---:|---:|")
    for name, first, median in rows:
        print(f"| {name} | {first:.0f} | {median:.0f} |")


if __name__ == "__main__":
    main()
