"""Probe: the picture recogniser's zero-shot bridge through WordNet's hierarchy instead of name embeddings.

    pip download --no-deps timm -d /tmp/timm && unzip -p /tmp/timm/timm-*.whl \
        timm/data/_info/imagenet_synsets.txt > /tmp/imagenet_synsets.txt
    python scripts/probe_wordnet_bridge.py                       # the five validation styles

The recogniser's bridge (``omnisep.encoders.recogniser``) turns Lite2's ImageNet probabilities into a vector
in the text space as ``softmax(logits / T) @ name_anchors``, each ImageNet class's anchor being MiniLM's
embedding of its name ("Walker hound", "tabby"). ImageNet's classes are WordNet 3.0 noun synsets, so a class
that is a kind of one of ours (every dog breed is a dog; the tabby is a cat) can point at our class's own
anchor instead. The ImageNet ids (wnids) in class order come from timm's ``imagenet_synsets.txt``
(``--synsets``; timm is Apache-2.0, the list is ImageNet's). For each held-out style, its recogniser
(``runs/querynet/recogniser-without-STYLE``) is scored as trained and with the anchors remapped; picture ->
label top-1 over the style's pictures. Not kept (docs/encoders.md, "Limits measured").
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

VALIDATION_STYLES = ("twemoji", "openmoji", "fluent-line", "game-icons", "gcompris-photo")


def kinds_of_classes(wnids, labels, exclude=("bird chirping",)):
    """``{imagenet index: label}``: the ImageNet classes under exactly one of our classes' noun senses (the most
    specific when one sense lies under another, as owl under bird); classes in ``exclude`` are not mapped."""
    from omnisep.querynet.wordnet import WordNet
    from omnisep.querynet.words import WORDNET_SENSES, wordnet_folder

    wordnet = WordNet(wordnet_folder())
    targets: dict[int, str] = {}
    for label in labels:
        for lemma, pos, sense in WORDNET_SENSES.get(label, ()):
            if pos == "n":
                targets[wordnet._sense_offset(lemma, pos, sense)] = label

    @functools.lru_cache(None)
    def ancestors(offset: int) -> frozenset:
        found = {offset}
        for symbol, target, pos, _ in wordnet._line(offset, "n")[1]:
            if symbol in ("@", "@i") and pos == "n":
                found |= ancestors(target)
        return frozenset(found)

    mapping = {}
    for index, wnid in enumerate(wnids):
        senses = [o for o in ancestors(int(wnid[1:])) if o in targets]
        # the most specific: a sense that lies above another of the hits (bird above owl) gives way
        specific = {targets[o] for o in senses if not any(o != other and o in ancestors(other) for other in senses)}
        specific -= set(exclude)
        if len(specific) == 1:
            mapping[index] = specific.pop()
    return mapping


def main() -> None:
    import torch
    import torch.nn.functional as F

    from omnisep.data.corpus import CLASSES
    from omnisep.encoders.bundled import BundledEncoder
    from omnisep.encoders.recogniser import PictureRecogniser
    from omnisep.query_aug import ClassMatcher
    from omnisep.querynet.image_head import V1_HEADS
    from omnisep.querynet.pictures import collect_pictures, flatten

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="+", default=list(VALIDATION_STYLES))
    parser.add_argument("--synsets", default="/tmp/imagenet_synsets.txt")
    parser.add_argument("--work", default="runs/querynet")
    args = parser.parse_args()
    labels = sorted(CLASSES)
    wnids = Path(args.synsets).read_text().split()
    encoder = BundledEncoder(V1_HEADS)
    anchors = F.normalize(encoder.embed_text(labels), dim=-1)
    matcher = ClassMatcher.for_pictures()
    variants = {"as trained": None, "kinds, birds excluded": kinds_of_classes(wnids, labels),
                "kinds, birds too": kinds_of_classes(wnids, labels, exclude=())}
    for name, mapping in variants.items():
        if mapping:
            print(f"{name}: {len(mapping)} ImageNet classes remapped")
    print("| style | pictures | " + " | ".join(variants) + " |")
    print("|---|---:|" + "---:|" * len(variants))
    totals = {name: [] for name in variants}
    for style in args.styles:
        pictures = [p for p in collect_pictures(labels, sources=[style], log=lambda *a: None)]
        recogniser = PictureRecogniser.load(Path(args.work) / f"recogniser-without-{style}.safetensors", encoder=encoder)
        features = recogniser.features([flatten(p.rgba) for p in pictures])
        trained = recogniser.name_anchors.clone()
        cells = []
        for name, mapping in variants.items():
            recogniser.name_anchors.copy_(trained)
            for index, label in (mapping or {}).items():
                recogniser.name_anchors[index] = anchors[labels.index(label)].half()
            with torch.no_grad():
                probes = F.normalize(recogniser(features), dim=-1)
            right = sum(m.label == p.label for m, p in zip(matcher.match(probes), pictures))
            totals[name].append(right / len(pictures))
            cells.append(f"{right / len(pictures):.3f}")
        print(f"| {style} | {len(pictures)} | " + " | ".join(cells) + " |", flush=True)
    print("| mean | | " + " | ".join(f"{sum(v) / len(v):.3f}" for v in totals.values()) + " |")


if __name__ == "__main__":
    main()
