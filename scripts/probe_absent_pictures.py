"""Probe: when the pictured (or described) sound is *absent*, how often does the mixture's evidence move the query onto
a sound that is there (so that the separation returns that sound instead of near silence)?

    python scripts/probe_absent_pictures.py [--npz runs/probe-int/val.npz] [--style openmoji]

For every mixture in the ``.npz`` of ``scripts/probe_interferer.py`` (its ``tags``: the sound tagger over the
mixture, and ``own`` / ``other``: its two classes) and every picture of the style whose class is neither, the
picture matcher's answer (the style's recogniser that never saw it) is taken alone and weighed by
``(0.05 + tag)^B`` for each power B; the table gives the share of those (mixture, picture) pairs whose answer is one
of the mixture's two classes. Alone, that share is what a wrong recognition costs; the rise with B is what the
evidence adds for absent sounds. The pictures' own class is absent by construction, so no answer is right.
``--texts FILE`` asks the same of a descriptions file's descriptions, matched with their words by the text matcher.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    import torch
    import torch.nn.functional as F

    from omnisep.encoders.bundled import BundledEncoder
    from omnisep.encoders.recogniser import PictureRecogniser
    from omnisep.query_aug import EVIDENCE_FLOOR, ClassMatcher
    from omnisep.querynet.image_head import V1_HEADS
    from omnisep.querynet.pictures import collect_pictures, flatten

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", default="runs/probe-int/val.npz")
    parser.add_argument("--style", default="openmoji")
    parser.add_argument("--powers", default="0,0.5,1,2")
    parser.add_argument("--top", type=int, default=0, help="weigh only the picture's first TOP classes (0: all)")
    parser.add_argument("--work", default="runs/querynet")
    parser.add_argument("--texts", default=None,
                        help="a descriptions file (configs/querynet/...): its descriptions, matched with their words by "
                             "the text matcher, instead of the style's pictures")
    args = parser.parse_args()
    matcher = ClassMatcher.load() if args.texts else ClassMatcher.for_pictures()
    labels = list(matcher.labels)
    data = np.load(args.npz)
    order = [list(data["labels"]).index(label) for label in labels]
    tags = torch.as_tensor(data["tags"][:, order], dtype=torch.float32)
    own = [labels.index(str(data["labels"][i])) for i in data["own"]]
    other = [labels.index(str(data["labels"][i])) for i in data["other"]]
    encoder = BundledEncoder(V1_HEADS)
    if args.texts:
        from omnisep.querynet.words import read_queries

        texts, truth = read_queries(args.texts)
        known = [i for i, label in enumerate(truth) if label is not None]
        texts, truth = [texts[i] for i in known], [truth[i] for i in known]
        probabilities = matcher.probabilities(encoder.embed_text(texts), texts)
        classes = torch.tensor([labels.index(label) for label in truth])
        print(f"{args.texts}: {len(texts)} descriptions, {len(own)} mixtures ({args.npz})")
    else:
        pictures = collect_pictures(labels, sources=[args.style], log=lambda *a: None)
        recogniser = PictureRecogniser.load(Path(args.work) / f"recogniser-without-{args.style}.safetensors", encoder=encoder)
        with torch.no_grad():
            probes = F.normalize(recogniser(recogniser.features([flatten(p.rgba) for p in pictures])), dim=-1)
        probabilities = matcher.probabilities(probes)  # [P, N]
        classes = torch.tensor([labels.index(p.label) for p in pictures])
        print(f"{args.style}: {len(pictures)} pictures, {len(own)} mixtures ({args.npz})")
    print("| power | answer is a sound of the mixture (absent picture) |")
    print("|---:|---:|")
    for power in (float(x) for x in args.powers.split(",")):
        moved, pairs = 0, 0
        for m in range(len(own)):
            keep = (classes != own[m]) & (classes != other[m])
            weighed = probabilities[keep] * (EVIDENCE_FLOOR + tags[m].clamp(0, 1)) ** power
            if args.top:
                outside = probabilities[keep] < probabilities[keep].topk(args.top, dim=1).values[:, -1:]
                weighed = weighed.masked_fill(outside, 0.0)
            answer = weighed.argmax(dim=1)
            moved += int(((answer == own[m]) | (answer == other[m])).sum())
            pairs += int(keep.sum())
        print(f"| {power:g} | {moved / pairs:.3f} ({moved}/{pairs}) |", flush=True)


if __name__ == "__main__":
    main()
