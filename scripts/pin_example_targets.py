"""Write the regression reference of a bundled model's example targets (tests/test_examples_regression.py).

For every bundled example and each of its two sources, the target of the label's text query and of the
source's picture query, plus one query with a negative (the other source's label): every 997th sample
and the energy. Run it only when a change to what the model computes is intended, and say so.

    python scripts/pin_example_targets.py v2 tests/data/reference/example_targets_v2.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from omnisep import Separator
    from omnisep.audio import load_audio

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    separator = Separator(args.model)
    examples = json.loads((ROOT / "examples" / "examples.json").read_text())
    outputs = {}
    for example in examples:
        audio, rate = load_audio(ROOT / "examples" / example["file"])
        labels = list(example["image_queries"])
        for label in labels:
            other = next(x for x in labels if x != label)
            queries = {
                f"{example['file']}|text|{label}": dict(text=label),
                # the picture's own embedding: the signal path, not picture Query-Aug's choice of label
                f"{example['file']}|image|{label}": dict(image=ROOT / "examples" / example["image_queries"][label], query_aug=False),
                f"{example['file']}|text-negative|{label}": dict(text=label, negative_text=other),
            }
            for key, query in queries.items():
                target = separator.separate(audio, rate, **query).target[0].astype(np.float64)
                outputs[key] = {"length": int(target.size), "energy": float((target**2).sum()),
                                "samples": target[::997].tolist()}
    args.out.write_text(json.dumps({"note": f"targets of the bundled examples with model '{args.model}' "
                                            "(scripts/pin_example_targets.py); tests/test_examples_regression.py",
                                    "outputs": outputs}) + "\n")
    print(f"{len(outputs)} targets -> {args.out}")


if __name__ == "__main__":
    main()
