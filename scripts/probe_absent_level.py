"""Probe: how loud is what a text query returns when the described sound is *absent*, with Query-Aug and without?

Users judge a separator first by its sound, including silence when the queried sound is not there. Since one text
gets Query-Aug by default, a description is matched to a class and, when unsure, weighed by what the mixture holds,
which can move it onto a sound that is there. This measures what users hear: for every N-th validation mixture and
each casual validation description of a class the mixture does not hold (a few per mixture, drawn with a fixed
seed), the target's level against the mixture's (dB, energy ratio), through ``Separator.separate`` as the API runs it:

* ``name``: the absent class's name (the reference: what the model does when asked for an absent class);
* ``as it is``: the description with ``query_aug=False`` (the text's own embedding; the default before);
* ``matched``: the description with the default (Query-Aug, weighed by the mixture when unsure).

Lower is better. Also printed: the share of pairs whose target holds most of the mixture (above -3 dB), the
sound returned in full instead of near silence.

    python scripts/probe_absent_level.py --every 4 --per-mixture 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "querynet"
FILES = ("descriptions-val-casual.json", "descriptions-val-casual-2.json")


def level(part: np.ndarray, mixture: np.ndarray) -> float:
    return float(10 * np.log10(max(float(np.sum(part**2)), 1e-12) / max(float(np.sum(mixture**2)), 1e-12)))


def main() -> None:
    import torch
    from tqdm import tqdm

    from omnisep.api import Separator
    from omnisep.data.mixing import MixtureDataset
    from omnisep.data.mixtures import load_test_set
    from omnisep.evaluation.auto_negative import _BankTable
    from omnisep.querynet.words import read_queries

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixtures", default="corpus/mixtures_val.jsonl")
    parser.add_argument("--manifest", default="corpus/manifest.jsonl")
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--per-mixture", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    separator = Separator("default")
    descriptions: dict[str, list[str]] = {}
    for name in FILES:
        texts, labels = read_queries(CONFIGS / name)
        for text, label in zip(texts, labels):
            if label is not None:
                descriptions.setdefault(label, []).append(text)
    test_set = load_test_set(args.mixtures, args.manifest)
    dataset = MixtureDataset(test_set.items, _BankTable(test_set.items, separator.bank), training=False, num_sources=2,
                             mixtures=test_set.mixtures)
    rng = np.random.default_rng(args.seed)
    forms = ("name", "as it is", "matched")
    levels = {form: [] for form in forms}
    moved = 0
    for index in tqdm(range(0, len(test_set.mixtures), args.every)):
        mixture = dataset[index]["mixture"].numpy()
        held = {test_set.items[i].label for i in test_set.mixtures[index][:2]}
        absent = sorted(set(descriptions) - held)
        for label in rng.choice(absent, size=args.per_mixture, replace=False):
            text = str(rng.choice(descriptions[str(label)]))
            with torch.no_grad():
                results = {
                    "name": separator.separate(mixture, 16000, text=str(label)),
                    "as it is": separator.separate(mixture, 16000, text=text, query_aug=False),
                    "matched": separator.separate(mixture, 16000, text=text),
                }
            for form, result in results.items():
                levels[form].append(level(result.target, mixture))
            match = results["matched"].query_label.split(" (Query-Aug")[0]
            moved += match in held
    print(f"\n{len(levels['name'])} (mixture, absent description) pairs, {args.mixtures}, every {args.every}\n")
    print("| query | target level (dB, mean ± SEM) | median | pairs above -3 dB |")
    print("|---|---:|---:|---:|")
    for form in forms:
        values = np.array(levels[form])
        print(f"| {form} | {values.mean():.1f} ± {values.std(ddof=1) / np.sqrt(len(values)):.1f} | {np.median(values):.1f} | "
              f"{np.mean(values > -3):.1%} |")
    print(f"\nmatched answers naming a class the mixture holds: {moved / len(levels['name']):.1%}")


if __name__ == "__main__":
    main()
