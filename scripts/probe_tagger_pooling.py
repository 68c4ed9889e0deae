"""Probe (issue 15/16): does the sound tagger hear mixtures better from a richer pooling of the same frozen aisfx map?

The shipped tagger reads the aisfx embedding (mean over frequency, max over time: 512 numbers per ~2.3 s block).
That pooling throws away where in frequency a feature fired and how long it lasted, which is what tells a violin
from a trombone. This draws N training mixtures exactly as ``omnisep encoders train-tagger`` does, keeps several
poolings of the last conv map from one backbone pass, fits the same MLP on each and prints the validation ranking
metrics (validation list only; never the test split).

    python scripts/probe_tagger_pooling.py --mixtures 4000 --work runs/tagger-pooling
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn as nn

from omnisep.training.tagger import BATCH, CHUNK_MIXTURES as PIECE, fit_tagger, list_features, load_features, mixture_features, presence_scores, \
    ranking_metrics, save_features

POOLINGS = {
    "shipped (mean f, max t)": slice(0, 512),
    "+ mean t": slice(0, 1024),
    "+ 4 bands (max t)": [slice(0, 512), slice(1024, 3072)],
    "+ mean t + 4 bands": slice(0, 3072),
}


class MultiPool(nn.Module):
    """The aisfx CNN, returning [shipped 512 | mean over time 512 | 4 frequency bands, max over time, 4 x 512]."""

    def __init__(self, cnn: nn.Module):
        super().__init__()
        self.cnn = cnn

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        x = spectrogram.unsqueeze(1)
        for index, pool in enumerate((2, 2, 2, 1)):
            x = getattr(self.cnn, f"conv_block{index + 1}")(x, pool)
        # x: [B, 512, time, freq]
        shipped = x.mean(dim=3).amax(dim=2)
        mean_t = x.mean(dim=3).mean(dim=2)
        bands = [band.mean(dim=3).amax(dim=2) for band in x.chunk(4, dim=3)]
        return torch.cat([shipped, mean_t, *bands], dim=1)


def pick(features: torch.Tensor, columns) -> torch.Tensor:
    if isinstance(columns, slice):
        return features[..., columns]
    return torch.cat([features[..., c] for c in columns], dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="corpus/manifest.jsonl")
    parser.add_argument("--validation", default="corpus/mixtures_val.jsonl")
    parser.add_argument("--mixtures", type=int, default=4000)
    parser.add_argument("--work", default="runs/tagger-pooling")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from omnisep.data.manifest import read_manifest
    from omnisep.data.mixing import load_clip
    from omnisep.data.mixtures import load_test_set
    from omnisep.encoders.backbones import load_sfx_cnn

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    items = [item for item in read_manifest(args.manifest) if item.split == "train"]
    labels = sorted({item.label for item in items})
    backbone = MultiPool(load_sfx_cnn()).eval()
    pieces, clips = [], None
    for piece in range(args.mixtures // PIECE):
        # the same pieces (and mixtures) as ``train_from_manifest`` draws with this seed
        path = work / f"train-seed{args.seed}-{piece:03d}.safetensors"
        if not path.is_file():
            started = time.perf_counter()
            clips = clips if clips is not None else [load_clip(item.audio) for item in items]
            piece_features = mixture_features(items, clips, PIECE, args.seed, backbone, batch=BATCH,
                                              first_step=piece * PIECE // BATCH)
            save_features(path, *piece_features[:2])
            print(f"features of piece {piece} in {time.perf_counter() - started:.0f} s", flush=True)
        pieces.append(load_features(path))
    features = torch.cat([piece[0] for piece in pieces])
    targets = torch.cat([piece[1] for piece in pieces])
    val_path = work / f"val-{Path(args.validation).stem}.safetensors"
    if val_path.is_file():
        val_features, val_targets = load_features(val_path)
    else:
        val_features, val_targets = list_features(load_test_set(args.validation, args.manifest), backbone, labels)
        save_features(val_path, val_features, val_targets)

    rows = {}
    for name, columns in POOLINGS.items():
        tagger, _ = fit_tagger(pick(features, columns), targets, labels, epochs=args.epochs, seed=args.seed)
        rows[name] = ranking_metrics(presence_scores(tagger, pick(val_features, columns)), val_targets)
        print(name, json.dumps(rows[name]), flush=True)
    print(f"\n| pooling ({args.mixtures} training mixtures) | features | val top-1 | all present on top | AUC |")
    print("|---|---:|---:|---:|---:|")
    for name, columns in POOLINGS.items():
        width = pick(val_features[:1], columns).shape[-1]
        m = rows[name]
        print(f"| {name} | {width} | {m['top1']:.3f} | {m['all_in_top']:.3f} | {m['auc']:.3f} |")


if __name__ == "__main__":
    main()
