"""Choose how much a description's words count in Query-Aug (``querynet.words.LEXICAL_WEIGHT``), on validation.

    python scripts/probe_lexical.py                       # the sweep, validation files only
    python scripts/probe_lexical.py --test 0.02           # then, once, the held-out test file at the chosen weight

For each weight the shipped bank's entries get a lexical calibration fitted as
``querynet.words.build_bank`` fits it (``descriptions-val.json`` plus every
description and gloss left out of its class), and the table gives
description -> label top-1, the share answered, and the out-of-vocabulary
queries said unknown, on ``descriptions-val.json`` and the casual validation
file. The weight is chosen on the casual file (the other is at 1.000).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "querynet"
VALIDATION = ("descriptions-val.json", "descriptions-val-casual.json")
TEST = "descriptions-heldout-test.json"
WEIGHTS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05)


def scored(matcher, encoder, name: str, words: bool) -> tuple[float, float, str]:
    from omnisep.querynet.words import read_queries

    texts, labels = read_queries(CONFIGS / name)
    matches = matcher.match(encoder.embed_text(texts), texts if words else None)
    known = [i for i, label in enumerate(labels) if label is not None]
    unknown = [i for i, label in enumerate(labels) if label is None]
    top1 = sum(matches[i].label == labels[i] for i in known) / len(known)
    answered = sum(matches[i].known for i in known) / len(known)
    return top1, answered, f"{sum(not matches[i].known for i in unknown)}/{len(unknown)}"


def main() -> None:
    from omnisep.encoders import get_encoder
    from omnisep.query_aug import ClassMatcher
    from omnisep.querynet.words import fit_calibration, read_queries

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=float, help="Score the held-out test file once, at this weight.")
    args = parser.parse_args()
    encoder = get_encoder("bundled")
    shipped = ClassMatcher.load()
    texts, truth = read_queries(CONFIGS / "descriptions-val.json")
    vectors = encoder.embed_text(texts)
    files = (TEST,) if args.test is not None else VALIDATION
    weights = (0.0, args.test) if args.test is not None else WEIGHTS
    print("| weight | " + " | ".join(f"{name}: top-1 / answered / unknown said" for name in files) + " |")
    print("|---:|" + "---|" * len(files))
    for weight in weights:
        matcher = copy.deepcopy(shipped)
        fit_calibration(matcher, vectors, truth, texts, weight)
        cells = [scored(matcher, encoder, name, weight > 0) for name in files]
        print(f"| {weight:g} | " + " | ".join(f"{t:.3f} / {a:.2f} / {u}" for t, a, u in cells) + " |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
