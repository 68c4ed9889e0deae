"""Probe: how often does a sound tagger name the *other* sound of a two-source mixture (what the automatic negative
and the mixture evidence ask of it)?

For every N-th mixture of a list, each tagger hears the mixture as Query-Aug's evidence does (``scan.mixture_tags``: the
largest probability per label over its windows); the queried class is left out, and so are labels as close to it as the automatic
negative's guard (cosine 0.55), as ``negatives.AutoNegative`` does (an interferer that close counts as missed). Printed per tagger: the share of mixtures whose
interferer is ranked first, within the first two and three, and the mean probability the interferer gets.

    python scripts/probe_tagger_naming.py --tagger src/omnisep/pretrained/tagger/tagger.safetensors \
        --tagger runs/tagger-48k/tagger.safetensors --mixtures corpus/mixtures_shift.jsonl \
        --manifest corpus/manifest-shift.jsonl --every 2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

GUARD = 0.55


def main() -> None:
    from tqdm import tqdm

    from omnisep import negatives
    from omnisep.data.mixing import MixtureDataset
    from omnisep.data.mixtures import load_test_set
    from omnisep.evaluation.auto_negative import _BankTable
    from omnisep.queries import normalize
    from omnisep.scan import Verification, mixture_tags
    from omnisep.spectral import SAMPLE_RATE
    from omnisep.states import load_checkpoint
    from omnisep.tagger import load_tagger

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tagger", action="append", required=True)
    parser.add_argument("--mixtures", default="corpus/mixtures_val.jsonl")
    parser.add_argument("--manifest", default="corpus/manifest.jsonl")
    parser.add_argument("--checkpoint", default="src/omnisep/pretrained/v3")
    parser.add_argument("--every", type=int, default=2)
    args = parser.parse_args()

    bank = load_checkpoint(args.checkpoint).bank
    labels = list(bank.labels)
    rows = normalize(torch.as_tensor(bank.embeddings, dtype=torch.float32))
    ears = [Verification(None, rows, listen=False, tagger=load_tagger(path), labels=labels) for path in args.tagger]
    test_set = load_test_set(args.mixtures, args.manifest)
    dataset = MixtureDataset(test_set.items, _BankTable(test_set.items, bank), training=False, num_sources=2,
                             mixtures=test_set.mixtures)
    ranks = [[] for _ in ears]
    heard = [[] for _ in ears]
    for index in tqdm(range(0, len(test_set.mixtures), args.every)):
        wave = dataset[index]["mixture"].numpy()
        target_item, interferer_item = test_set.mixtures[index][:2]
        own, other = labels.index(test_set.items[target_item].label), labels.index(test_set.items[interferer_item].label)
        close = negatives.similarities(rows[own], bank).numpy() >= GUARD
        for k, ear in enumerate(ears):
            heard_by = mixture_tags(ear, wave, SAMPLE_RATE)
            tags = np.array([heard_by[label] for label in labels])
            heard[k].append(float(tags[other]))
            tags = tags.copy()
            tags[own] = -1.0
            tags[close] = -1.0  # an interferer this close to the query is never subtracted: a miss
            ranks[k].append(len(labels) if close[other] else int(np.sum(tags > tags[other])))
    print(f"\n{len(ranks[0])} mixtures of {args.mixtures} (every {args.every})\n")
    print("| tagger | interferer first | within two | within three | its mean probability |")
    print("|---|---:|---:|---:|---:|")
    for path, rank, probability in zip(args.tagger, ranks, heard):
        rank = np.array(rank)
        print(f"| {path} | {np.mean(rank == 0):.3f} | {np.mean(rank < 2):.3f} | {np.mean(rank < 3):.3f} | {np.mean(probability):.3f} |")


if __name__ == "__main__":
    main()
