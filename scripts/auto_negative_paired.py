"""Paired differences between automatic-negative settings of one `omnisep evaluate-auto-negative run`.

For each setting, per query mode: its mean gain over no negative (and its share of the oracle
negative's gain), and its paired difference from a base setting (± SEM over the mixtures both score).

    python scripts/auto_negative_paired.py runs/qt-rtag/shift-every4.json auto/mixture/n1/sim0.55/a1 \\
        auto/residual-tagger/n1/sim0.55/a1 'auto/mixture*residual-tagger/n1/sim0.55/a1'
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def values(rows: dict, key: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in rows[key]], dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="the JSON an `omnisep evaluate-auto-negative run` wrote")
    parser.add_argument("base", help="the setting the others are paired against, e.g. auto/mixture/n1/sim0.55/a1")
    parser.add_argument("settings", nargs="+")
    args = parser.parse_args()
    data = json.load(open(args.run))
    alpha = args.base.rsplit("/a", 1)[1]
    print(f"{data['count']} mixtures of {data['mixtures']} (every {data.get('every', 1)}), model {data['checkpoint']}\n")
    modes = list(data["scores"])
    print("| setting | " + " | ".join(f"{mode}: gain (share of oracle) / - base" for mode in modes) + " |")
    print("|---" * (len(modes) + 1) + "|")
    for key in [args.base, *args.settings]:
        cells = []
        for mode in modes:
            rows = data["scores"][mode]
            plain, oracle = values(rows, "plain"), values(rows, f"oracle/a{alpha}")
            mine, base = values(rows, key), values(rows, args.base)
            gain, oracle_gain = np.nanmean(mine - plain), np.nanmean(oracle - plain)
            both = ~np.isnan(mine) & ~np.isnan(base)
            diff = mine[both] - base[both]
            sem = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else float("nan")
            cells.append(f"{gain:+.2f} ({gain / oracle_gain:.0%}) / {diff.mean():+.2f} ± {sem:.2f}")
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
