"""Probe: WordNet's kinds (hyponyms) and derived words of each class, counted as words only (BM25), not embedded.

    python scripts/probe_wordnet_words.py                 # validation files only
    python scripts/probe_wordnet_words.py --test VARIANT  # then, once, the held-out test file for the chosen variant

A description often names a kind of the class ("the mare", "a bantam", "the cellist") that MiniLM does not
place near the class. Each variant adds, per class, words read from WordNet 3.0 (the class's senses in
``querynet.words.WORDNET_SENSES``) to the class's BM25 document (:mod:`omnisep.lexical`) and not to the
embedded entries (``querynet.words.bank_words``); words that two classes would share, and the bird's kinds
(which hold the owls, ducks and hens), are left out. Prints description -> label top-1 on both casual
validation files. The shipped bank has ``kinds-2+derived`` (``querynet.words.KINDS_DEPTH``); the probe
rebuilds each variant's words over the shipped bank's entries.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "querynet"
VALIDATION = ("descriptions-val-casual.json", "descriptions-val-casual-2.json")
TEST = "descriptions-heldout-test.json"
VARIANTS = {"none": (0, False), "kinds-1": (1, False), "kinds-2": (2, False), "derived": (0, True),
            "kinds-1+derived": (1, True), "kinds-2+derived": (2, True)}


def main() -> None:
    import torch

    from omnisep.encoders import get_encoder
    from omnisep.query_aug import ClassMatcher
    from omnisep.querynet.words import bank_words, read_queries

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", choices=sorted(VARIANTS), help="score the held-out test file once, for this variant")
    parser.add_argument("--show", action="store_true", help="print each class's added words")
    args = parser.parse_args()
    encoder = get_encoder("bundled")
    files = (TEST,) if args.test else VALIDATION
    variants = ("none", args.test) if args.test else tuple(VARIANTS)
    queries = {name: read_queries(CONFIGS / name) for name in files}
    vectors = {name: encoder.embed_text(texts) for name, (texts, _) in queries.items()}
    print("| variant | words added | " + " | ".join(files) + " | together |")
    print("|---|---:|" + "---:|" * (len(files) + 1))
    for variant in variants:
        matcher = ClassMatcher.load()
        depth, derived = VARIANTS[variant]
        added = bank_words(matcher.labels, depth=depth, derived=derived)
        if args.show:
            for label, words in added.items():
                print(f"  {label}: {', '.join(words[:40])}")
        matcher.words = added
        right, total, cells = 0, 0, []
        for name, (texts_, labels) in queries.items():
            known = [i for i, label in enumerate(labels) if label is not None]
            matches = matcher.match(vectors[name][torch.as_tensor(known)], [texts_[i] for i in known])
            hits = sum(match.label == labels[i] for match, i in zip(matches, known))
            right, total = right + hits, total + len(known)
            cells.append(f"{hits / len(known):.3f} ({hits}/{len(known)})")
        count = sum(len(words) for words in added.values())
        print(f"| {variant} | {count} | " + " | ".join(cells) + f" | {right / total:.3f} |", flush=True)


if __name__ == "__main__":
    main()
