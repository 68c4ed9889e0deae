"""Probe: what naming one of a class's words-only phrases (its WordNet kinds, whole) should add to its score.

    python scripts/probe_mentions.py                 # validation files only
    python scripts/probe_mentions.py --test 0.06     # then, once, the held-out test file for the chosen weight

The bank's words-only entries ("mare", "bullfrog", "licorice stick": ``querynet.words.bank_words``) count in BM25,
where a kind's name weighs no more than a context word ("night", "loudly") and less in a class with many kinds (BM25
divides by the document's length). A mention (``lexical.MentionIndex``: the phrase's stemmed words, consecutive in
the description) adds a fixed weight to the class's score instead. Prints description -> label top-1 on both casual
validation files for each weight, and each answer the chosen weight changes.

Result (2026-12-07, docs/encoders.md): 0.06 was best on validation (0.838 -> 0.863, six answers from wrong to right,
none lost), and lost on the held-out test file (0.875 -> 0.850, two answers lost, none gained), so the shipped bank
has no mention weight (``querynet.words.MENTION_WEIGHT`` = 0); this probe sets it on the loaded matcher.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "querynet"
VALIDATION = ("descriptions-val-casual.json", "descriptions-val-casual-2.json")
TEST = "descriptions-heldout-test.json"
WEIGHTS = (0.0, 0.03, 0.06, 0.1, 0.2)


def main() -> None:
    from omnisep.encoders import get_encoder
    from omnisep.query_aug import ClassMatcher
    from omnisep.querynet.words import read_queries

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=float, help="score the held-out test file once, for this weight")
    parser.add_argument("--show", type=float, default=0.06, help="list the answers this weight changes")
    args = parser.parse_args()
    encoder = get_encoder("bundled")
    files = (TEST,) if args.test is not None else VALIDATION
    weights = (0.0, args.test) if args.test is not None else WEIGHTS
    shown = args.test if args.test is not None else args.show
    matcher = ClassMatcher.load()
    data = {}
    for name in files:
        texts, labels = read_queries(CONFIGS / name)
        known = [i for i, label in enumerate(labels) if label is not None]
        texts = [texts[i] for i in known]
        data[name] = (texts, [labels[i] for i in known], encoder.embed_text(texts))
    print("| mention weight | " + " | ".join(files) + " | together |")
    print("|---:|" + "---:|" * (len(files) + 1))
    answers = {}
    for weight in weights:
        matcher.lexical["mention"] = weight
        right, total, cells = 0, 0, []
        for name, (texts, labels, vectors) in data.items():
            found = [m.label for m in matcher.match(vectors, texts)]
            answers[weight, name] = found
            hits = sum(a == b for a, b in zip(found, labels))
            right, total = right + hits, total + len(labels)
            cells.append(f"{hits / len(labels):.3f} ({hits}/{len(labels)})")
        print(f"| {weight:g} | " + " | ".join(cells) + f" | {right / total:.3f} |")
    print(f"\nanswers changed by weight {shown:g}:")
    for name, (texts, labels, _) in data.items():
        for text, truth, before, after in zip(texts, labels, answers[0.0, name], answers[shown, name]):
            if before != after:
                verdict = "right" if after == truth else ("wrong" if before != truth else "LOST")
                print(f"  {text!r}: {before} -> {after} ({verdict}; truth {truth})")


if __name__ == "__main__":
    main()
