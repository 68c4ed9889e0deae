"""Build the bundled default model's inputs from the offline corpus, in one process.

    omnisep corpus build corpus/                        # the corpus (docs/corpus.md)
    python scripts/build_default_model.py corpus/ runs/default-build
    omnisep train configs/default.toml                  # the Separate-Net (about an hour on 2 cores)

Steps: (1) a seeded subset manifest (the 2-core CPU budget allows about a
thousand training clips; the test split is kept whole), (2) the bundled
encoder's projection heads, trained contrastively onto MiniLM label texts,
written into the package, (3) the embedding cache that training and
evaluation read. Steps 2 and 3 embed the same clips and pictures, so the
backbone features are memoised between them: the slow audio CNN runs once per
distinct clip.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path

PACKAGE_HEADS = Path(__file__).resolve().parents[1] / "src" / "omnisep" / "pretrained" / "encoder-heads"


def subset_manifest(corpus: Path, per_class: dict[str, int], seed: int) -> Path:
    """``manifest-default.jsonl`` beside the corpus manifest: at most ``per_class[split]`` items per class and split."""
    from omnisep.data.manifest import read_manifest, write_manifest

    items = read_manifest(corpus / "manifest.jsonl")
    groups = defaultdict(list)
    for item in items:
        groups[(item.split, item.label)].append(item)
    rng = random.Random(seed)
    chosen = []
    for (split, _label), group in sorted(groups.items()):
        limit = per_class.get(split)
        chosen.extend(group if limit is None or len(group) <= limit else rng.sample(group, limit))
    chosen.sort(key=lambda item: item.id)
    return write_manifest(corpus / "manifest-default.jsonl", chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="folder made by `omnisep corpus build`")
    parser.add_argument("work", type=Path, help="output folder for the embedding cache")
    parser.add_argument("--train-per-class", type=int, default=25)
    parser.add_argument("--val-per-class", type=int, default=5)
    parser.add_argument("--augment", type=int, default=1, help="augmented copies per clip for head training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from omnisep.data.cache import build_cache
    from omnisep.data.manifest import read_manifest
    from omnisep.encoders.bundled import BundledEncoder
    from omnisep.training.encoder_heads import train_from_manifest

    torch.manual_seed(args.seed)
    start = time.time()
    manifest = subset_manifest(args.corpus, {"train": args.train_per_class, "val": args.val_per_class}, args.seed)
    print(f"subset manifest: {manifest} ({len(read_manifest(manifest))} items)", flush=True)

    untrained = BundledEncoder(heads=None, allow_untrained_heads=True)
    untrained.feature_memo = {}
    args.work.mkdir(parents=True, exist_ok=True)
    heads_file = args.work / "heads.safetensors"
    train_from_manifest(manifest, heads_file, encoder=untrained, augment_copies=args.augment, seed=args.seed)
    PACKAGE_HEADS.mkdir(parents=True, exist_ok=True)
    for name in ("heads.safetensors", "heads.json"):
        shutil.copyfile(args.work / name, PACKAGE_HEADS / name)
    print(f"heads: {time.time() - start:.0f} s, copied into {PACKAGE_HEADS}", flush=True)

    encoder = untrained.with_heads(PACKAGE_HEADS / "heads.safetensors")
    items = read_manifest(manifest)
    counts = build_cache(items, encoder, args.work / "cache", progress=True, total=len(items))
    print(f"cache: {counts} in {time.time() - start:.0f} s total", flush=True)


if __name__ == "__main__":
    main()
