"""Image head v2: trained on many picture styles into the unchanged MiniLM anchor space.

    python -m omnisep.querynet.image_head --work runs/querynet [--hold-out gcompris-drawing] [--copies 6]

Steps (each cached under ``--work``, so a rerun is quick):

1. pictures of every source (:mod:`omnisep.querynet.pictures`), each picture
   plus ``copies`` strong augmentations (:mod:`omnisep.querynet.augment`) ->
   EfficientNet-Lite0 features (``features.safetensors``);
2. the zero-shot bridge: EfficientNet-Lite0's own ImageNet-1k classifier
   (from the same wheel as the backbone) and MiniLM embeddings of the 1,000
   ImageNet class names (``assets/imagenet-classes.json``);
3. leave-one-source-out: for each source, a head trained on all others is
   scored on it (image->label top-1/top-5 against the 40 label anchors), for
   the MLP alone, the bridge alone and the mix; the bridge mix weight and
   temperature are chosen on the sources other than ``--hold-out``;
4. the shipped head: trained on every source, written with the *unchanged*
   text and audio heads as heads version 2 (``supersedes`` version 1);
5. Query-Aug for pictures: the calibration of the picture matcher (temperature
   and unknown thresholds, :func:`omnisep.query_aug.calibrate`), fitted on the
   leave-one-source-out outputs of every source but ``--hold-out``, so each
   picture is scored by a head that never saw its style
   (``picture-calibration.json``; ``--pictures-calibration`` writes the shipped
   ``pretrained/query-aug/pictures.json``).

Only the image head changes: the audio head's tensors are copied bit for
bit, so a Separate-Net trained on version-1 embeddings keeps working
(docs/encoders.md, "Heads versions").
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from omnisep import fileio
from omnisep.errors import OmniSepError
from omnisep.encoders.heads import HeadConfig, ProjectionHead, heads_sha256, load_heads, save_heads, train_heads

ASSETS = Path(__file__).resolve().parent / "assets"
# Held out one at a time by default: one source per kind of picture (CPU minutes each on a shared 2-core VM).
LOSO_SOURCES = ("twemoji", "openmoji", "fluent-line", "game-icons", "gcompris-drawing", "gcompris-photo")
# Share of known pictures (styles their head never saw) that picture Query-Aug may call unknown.
PICTURE_COSINE_QUANTILE = 0.1
# What the Separate-Net is given for a picture (omnisep.query_aug.GIVE): its first class's row, known or not (chosen on
# validation mixtures with each of five styles held out of its recogniser, scripts/val_soft_snap.py --pictures).
PICTURES_GIVE = "snap"
# How much what the mixture to separate holds weighs a picture's classes (omnisep.query_aug.ClassMatcher.match:
# p_c * (0.05 + presence_c) ** power among the picture's first PICTURES_EVIDENCE_TOP classes, then snapped). The presence
# is the sound tagger's over the mixture (omnisep.scan.mixture_tags), which did as well as the scan's at a third of the
# cost. Chosen on the five held-out validation styles as the best mean SDRi (+0.14 dB against snapping alone) among the
# rules that move a picture of an *absent* sound onto one the mixture holds no more often than the plain product over
# every class did (4.6 % of such pairs against 5.0 %; the square over every class: +0.26 dB but 24 %)
# (scripts/val_soft_snap.py --forms "scan b1,scan b2,scan-top3 b2" --presence-key tags, scripts/probe_absent_pictures.py;
# docs/encoders.md).
PICTURES_EVIDENCE = 2.0
PICTURES_EVIDENCE_TOP = 3
BRIDGE_GRID = [(w, t) for w in (0.0, 0.25, 0.4, 0.55, 0.7, 1.0) for t in (0.5, 1.0, 2.0)]
RECOGNISER_SEEDS = 3  # heads averaged in the picture recogniser (each 3 MB in float16)


def imagenet_classifier() -> tuple[torch.Tensor, torch.Tensor]:
    """EfficientNet-Lite0's ImageNet-1k classifier ``(weight [1000, 1280], bias [1000])`` from its wheel."""
    from omnisep.encoders.backbones import lite_state_and_classifier

    return lite_state_and_classifier("lite0")[1]


def imagenet_names() -> list[str]:
    return json.loads((ASSETS / "imagenet-classes.json").read_text(encoding="utf-8"))


def plain_rows(owners) -> list[int]:
    """The feature row of each picture's plain copy (copy 0), in picture order."""
    first = {}
    for row, owner in enumerate(owners):
        first.setdefault(owner, row)
    return [first[i] for i in range(len(first))]


def picture_features(encoder, pictures, copies: int, seed: int, log=print, backbone=None) -> tuple[torch.Tensor, list[int]]:
    """``[N * (1 + copies), 1280]`` features; row -> picture index. Copy 0 is the plain picture on white.

    ``backbone``: a function of a list of RGB arrays (default: the encoder's EfficientNet-Lite0)."""
    from omnisep.querynet.augment import augment_picture
    from omnisep.querynet.pictures import flatten

    rows, owners = [], []
    for index, picture in enumerate(pictures):
        rng = np.random.default_rng([seed, zlib.crc32(f"{picture.source}|{picture.name}|{picture.label}".encode())])
        versions = [flatten(picture.rgba)] + [augment_picture(picture.rgba, rng) for _ in range(copies)]
        rows.append((backbone or encoder.image_backbone_features)(versions))
        owners.extend([index] * len(versions))
        if (index + 1) % 50 == 0:
            log(f"  features: {index + 1}/{len(pictures)} pictures")
    return torch.cat(rows), owners


def lite_backbone(variant: str = "lite2"):
    """An EfficientNet-Lite's features of a list of RGB arrays: Lite2 (the picture recogniser's second backbone,
    converted once into the cache) or another ``variant`` (``lite1``, for probes; read from its wheel)."""
    from omnisep.encoders import backbones

    if variant == "lite2":
        model = backbones.load_efficientnet_lite2()
    else:
        model = backbones.build_efficientnet_lite(variant)
        model.load_state_dict(backbones.lite_state_and_classifier(variant)[0], strict=True)
        model.eval()
    return lambda images: backbones.pictures_to_features(model, images, backbones.LITE_VARIANTS[variant][2])


def load_or_compute_features(work: Path, encoder, pictures, copies: int, seed: int, log=print, backbone: str = "lite0"):
    """Features of every picture copy, cached per source in ``work/features-SOURCE.safetensors``
    (``features-lite2-SOURCE`` for EfficientNet-Lite2, and so on; keyed by that source's picture list), so an
    interrupted run resumes where it stopped."""
    from safetensors.torch import load_file

    from omnisep.encoders.weights import save_safetensors_atomic

    work.mkdir(parents=True, exist_ok=True)
    features, owners, compute = [], [], None
    for source in dict.fromkeys(p.source for p in pictures):
        chosen = [i for i, p in enumerate(pictures) if p.source == source]
        key = json.dumps([[pictures[i].label, pictures[i].name] for i in chosen] + [copies, seed])
        stem = f"features-{source}" if backbone == "lite0" else f"features-{backbone}-{source}"
        path, meta = work / f"{stem}.safetensors", work / f"{stem}.json"
        if path.is_file() and meta.is_file() and meta.read_text() == key:
            rows = load_file(str(path))["features"]
        else:
            log(f"  {backbone} features of {source} ({len(chosen)} pictures x {1 + copies})")
            if backbone != "lite0" and compute is None:
                compute = lite_backbone(backbone)
            rows, _ = picture_features(encoder, [pictures[i] for i in chosen], copies, seed, log, compute)
            save_safetensors_atomic({"features": rows}, path)
            fileio.write_text(meta, key, fsync=False)
        features.append(rows)
        owners.extend(i for i in chosen for _ in range(1 + copies))
    return torch.cat(features), owners


def make_head(state: dict, w: float, t: float, classifier, name_anchors) -> ProjectionHead:
    first = state["image.layers.0.weight"]
    config = HeadConfig(first.shape[1], state["image.layers.2.weight"].shape[0], first.shape[0], len(classifier[1]), t, w)
    head = ProjectionHead(config)
    weights = {k[len("image.") :]: v for k, v in state.items() if k.startswith("image.")}
    weights.update(
        bridge_weight=classifier[0].half(), bridge_bias=classifier[1].half(), bridge_anchors=name_anchors.half()
    )
    head.load_state_dict(weights, strict=True)
    return head.eval()


def top_k(embeddings: torch.Tensor, labels: list[str], anchor_labels: list[str], anchors: torch.Tensor) -> dict:
    scores = F.normalize(embeddings, dim=-1) @ F.normalize(anchors, dim=-1).T
    order = scores.argsort(dim=1, descending=True)
    truth = torch.tensor([anchor_labels.index(label) for label in labels])
    ranks = (order == truth[:, None]).float().argmax(dim=1)
    return {"top1": float((ranks < 1).float().mean()), "top5": float((ranks < 5).float().mean()), "queries": len(labels)}


def train_image_state(features, labels, anchors_by_label, seed: int = 0, epochs: int = 30):
    return train_heads({"image": features}, {"image": labels}, anchors_by_label, hidden=512, epochs=epochs, seed=seed,
                       feature_noise=0.1)


def leave_one_source_out(features, owners, pictures, label_list, anchors, classifier, name_anchors, sources, grid, log=print):
    """``{source: {(w, t): top-k}}`` for heads trained without that source, scored on its plain pictures."""
    anchors_by_label = dict(zip(label_list, anchors))
    owners = torch.tensor(owners)
    plain = torch.zeros(len(owners), dtype=torch.bool)
    plain[torch.tensor(plain_rows(owners.tolist()))] = True
    picture_source = np.array([p.source for p in pictures])
    results, states = {}, {}
    for source in sources:
        train_rows = torch.from_numpy(picture_source[owners.numpy()] != source)
        test_rows = (~train_rows) & plain
        labels = [pictures[i].label for i in owners[train_rows].tolist()]
        state = states[source] = train_image_state(features[train_rows], labels, anchors_by_label)
        test_labels = [pictures[i].label for i in owners[test_rows].tolist()]
        results[source] = {}
        with torch.no_grad():
            for w, t in grid:
                head = make_head(state, w, t, classifier, name_anchors)
                results[source][(w, t)] = top_k(head(features[test_rows]), test_labels, label_list, anchors)
        best = max(results[source].items(), key=lambda kv: kv[1]["top1"])
        log(f"  held out {source}: mlp {results[source][(0.0, 1.0)]['top1']:.3f}  bridge {results[source][(1.0, 1.0)]['top1']:.3f}"
            f"  best {best[0]} {best[1]['top1']:.3f} ({len(test_labels)} pictures)", )
    return results, states


def choose_bridge(results: dict, sources, hold_out: str) -> tuple[tuple[float, float], float]:
    """The bridge setting ``(w, t)`` of :data:`BRIDGE_GRID` with the best mean leave-one-source-out top-1 over the
    sources other than ``hold_out`` (never chosen on), and that mean."""
    others = [s for s in sources if s != hold_out]
    chosen = max(BRIDGE_GRID, key=lambda wt: np.mean([results[s][wt]["top1"] for s in others]))
    return chosen, float(np.mean([results[s][chosen]["top1"] for s in others]))


def recogniser_loso(features, owners, pictures, label_list, anchors, classifier, name_anchors, sources, seeds: int, log=print):
    """The picture recogniser's leave-one-source-out: ``({source: {(w, t): top-k}}, {source: [state per seed]})`` for
    recognisers of ``seeds`` heads trained without that source, scored on its plain pictures."""
    from omnisep.encoders.recogniser import from_head_states

    owners_t = torch.tensor(owners)
    plain = torch.zeros(len(owners), dtype=torch.bool)
    plain[torch.tensor(plain_rows(owners))] = True
    picture_source = np.array([p.source for p in pictures])
    anchors_by_label = dict(zip(label_list, anchors))
    results, states = {}, {}
    for source in sources:
        train_rows = torch.from_numpy(picture_source[owners_t.numpy()] != source)
        test_rows = (~train_rows) & plain
        labels = [pictures[i].label for i in owners_t[train_rows].tolist()]
        states[source] = [train_image_state(features[train_rows], labels, anchors_by_label, seed=k) for k in range(seeds)]
        test_labels = [pictures[i].label for i in owners_t[test_rows].tolist()]
        with torch.no_grad():
            results[source] = {(w, t): top_k(from_head_states(states[source], classifier, name_anchors, w, t)(features[test_rows]),
                                             test_labels, label_list, anchors) for w, t in BRIDGE_GRID}
        best = max(results[source].items(), key=lambda kv: kv[1]["top1"])
        log(f"  recogniser without {source}: best {best[0]} {best[1]['top1']:.3f} ({len(test_labels)} pictures)")
    return results, states


def picture_calibration(features, owners, pictures, states, sources, chosen, classifier, name_anchors, label_list, anchors,
                        recogniser: bool = False) -> dict:
    """The picture matcher's calibration (:meth:`omnisep.query_aug.ClassMatcher.for_pictures`), fitted on the plain
    pictures of ``sources``, each embedded by the head (``recogniser``: the recogniser) trained without its own source."""
    from omnisep.encoders.recogniser import from_head_states
    from omnisep.query_aug import PICTURES_FORMAT, ClassMatcher, calibrate

    plain = plain_rows(owners)
    vectors, labels = [], []
    with torch.no_grad():
        for source in sources:
            chosen_pictures = [i for i, p in enumerate(pictures) if p.source == source]
            head = (from_head_states(states[source], classifier, name_anchors, *chosen) if recogniser
                    else make_head(states[source], chosen[0], chosen[1], classifier, name_anchors))
            vectors.append(head(features[[plain[i] for i in chosen_pictures]]))
            labels += [pictures[i].label for i in chosen_pictures]
    matcher = ClassMatcher(label_list, label_list, anchors, label_list, ["label"] * len(label_list))
    # The image head maps any picture near some label, so a floor that only 1 % of known pictures fall under (the
    # text rule) lets every unknown picture through; 10 % catches a few (docs/encoders.md, "Query-Aug for pictures").
    record = calibrate(matcher, *matcher.class_scores(torch.cat(vectors)), labels, cosine_quantile=PICTURE_COSINE_QUANTILE)
    return {"format": PICTURES_FORMAT, "heads_version": 2, "recogniser": recogniser, "give": PICTURES_GIVE,
            "mixture_evidence": PICTURES_EVIDENCE, "mixture_evidence_top": PICTURES_EVIDENCE_TOP, "temperature": record["temperature"],
            "min_probability": record["min_probability"], "min_cosine": record["min_cosine"],
            "record": {**record, "sources": list(sources), "cosine_quantile": PICTURE_COSINE_QUANTILE}}


def main(argv=None) -> int:
    import click

    @click.command()
    @click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/querynet"), show_default=True)
    @click.option("--hold-out", default="gcompris-drawing", show_default=True, help="Source kept out of every choice.")
    @click.option("--copies", default=6, show_default=True, help="Augmented copies per picture.")
    @click.option("--seed", default=0, show_default=True)
    @click.option("--loso", default=",".join(LOSO_SOURCES), show_default=True,
                  help="Sources to hold out one at a time (comma-separated; 'all' for every source).")
    @click.option("--heads", "heads_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Version-1 heads to keep the audio head of (default: the shipped v1 heads).")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Write the v2 heads here (default: only evaluate).")
    @click.option("--pictures-calibration", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Also write the picture Query-Aug calibration here (the shipped one: src/omnisep/pretrained/query-aug/pictures.json).")
    @click.option("--recogniser", "recogniser_output", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Also train the picture recogniser (Lite2 + Lite0 features, --recogniser-seeds heads averaged), write it "
                       "here (the shipped one: src/omnisep/pretrained/picture-recogniser/recogniser.safetensors) and fit the "
                       "picture calibration on it.")
    @click.option("--recogniser-seeds", default=RECOGNISER_SEEDS, show_default=True, help="Heads averaged in the recogniser.")
    def command(work, hold_out, copies, seed, loso, heads_path, output, pictures_calibration, recogniser_output, recogniser_seeds):
        run(work, hold_out, copies, seed, heads_path, output, log=click.echo, loso=None if loso == "all" else loso.split(","),
            calibration_output=pictures_calibration, recogniser_output=recogniser_output, recogniser_seeds=recogniser_seeds)

    command.main(args=argv, standalone_mode=False)
    return 0


def run(work: Path, hold_out: str, copies: int, seed: int, heads_path, output, log=print, loso=None, calibration_output=None,
        recogniser_output=None, recogniser_seeds: int = RECOGNISER_SEEDS) -> dict:
    from omnisep.data.corpus import CLASSES
    from omnisep.encoders.bundled import BundledEncoder
    from omnisep.querynet.pictures import SOURCES, collect_pictures

    torch.manual_seed(seed)
    heads_path = heads_path or V1_HEADS
    encoder = BundledEncoder(heads_path)
    label_list = sorted(CLASSES)
    anchors = encoder.embed_text(label_list)
    name_anchors = encoder.embed_text(imagenet_names())
    classifier = imagenet_classifier()
    log("collecting pictures")
    pictures = collect_pictures(label_list, log=log)
    log(f"backbone features of {len(pictures)} pictures x {1 + copies}")
    features, owners = load_or_compute_features(work, encoder, pictures, copies, seed, log)
    sources = [s.name for s in SOURCES if loso is None or s.name in loso]
    if hold_out not in sources or "twemoji" not in sources:
        raise OmniSepError("--loso must include the held-out source and twemoji.")
    results, states = leave_one_source_out(features, owners, pictures, label_list, anchors, classifier, name_anchors, sources, BRIDGE_GRID, log)
    chosen, _ = choose_bridge(results, sources, hold_out)
    log(f"bridge mix chosen on the sources other than {hold_out}: weight {chosen[0]}, temperature {chosen[1]}")
    record = {
        "hold_out": hold_out,
        "copies": copies,
        "seed": seed,
        "chosen": {"bridge_weight": chosen[0], "bridge_temperature": chosen[1]},
        "pictures": {s: sum(p.source == s for p in pictures) for s in sources},
        "leave_one_source_out": {
            s: {"mlp": results[s][(0.0, 1.0)], "bridge": results[s][(1.0, chosen[1])], "mix": results[s][chosen]} for s in sources
        },
    }
    work.mkdir(parents=True, exist_ok=True)
    if recogniser_output is not None:
        record["recogniser"], recogniser_calibration = train_recogniser(
            work, encoder, pictures, features, owners, label_list, anchors, name_anchors, sources, hold_out, copies, seed,
            recogniser_seeds, recogniser_output, log)
    fileio.write_json(work / "image-head-loso.json", record, fsync=False, indent=1)
    calibration = picture_calibration(features, owners, pictures, states, [s for s in sources if s != hold_out], chosen,
                                      classifier, name_anchors, label_list, anchors)
    calibration["record"].update(hold_out=hold_out, copies=copies, seed=seed)
    fileio.write_json(work / "picture-calibration-heads-v2.json", calibration, indent=1)  # the report's heads-v2 rows
    if recogniser_output is not None:
        calibration = recogniser_calibration
        calibration["record"].update(hold_out=hold_out, copies=copies, seed=seed)
    for path in [work / "picture-calibration.json"] + ([calibration_output] if calibration_output else []):
        fileio.write_json(path, calibration, indent=1)
        log(f"wrote {path} (picture Query-Aug: {calibration['record']['calibration_top1']:.3f} top-1 over "
            f"{calibration['record']['calibration_known']} pictures of unseen styles)")
    # Heads trained without the held-out source (for the SDRi of that style) and on everything (shipped).
    v1_heads, v1_info = load_heads(heads_path)
    variants = [("without-" + source, source) for source in dict.fromkeys([hold_out, "twemoji"])]
    for name, left_out in variants + [("all", None)]:
        if left_out is not None:
            state = states[left_out]  # the leave-one-source-out head of that source
        else:
            state = train_image_state(features, [pictures[i].label for i in owners], dict(zip(label_list, anchors)))
        path = output if (name == "all" and output is not None) else work / f"heads-v2-{name}.safetensors"
        write_v2_heads(path, make_head(state, chosen[0], chosen[1], classifier, name_anchors), v1_heads, v1_info,
                       {**{k: v for k, v in record.items() if k != "leave_one_source_out"}, "trained_on": name,
                        "leave_one_source_out_top1": {s: record["leave_one_source_out"][s]["mix"]["top1"] for s in sources}})
        log(f"wrote {path}")
    return record


def train_recogniser(work, encoder, pictures, lite0, owners, label_list, anchors, name_anchors, sources, hold_out, copies, seed,
                     seeds, output, log=print) -> tuple[dict, dict]:
    """The picture recogniser (:mod:`omnisep.encoders.recogniser`): its leave-one-source-out table, the bridge chosen on
    the sources other than ``hold_out``, a recogniser without each source (in ``work``, for honest SDRi rows and
    validation probes) and one on every source (``output``); returns (record, picture calibration fitted on its outputs)."""
    from omnisep.encoders.backbones import lite_state_and_classifier
    from omnisep.encoders.recogniser import from_head_states

    lite2, lite2_owners = load_or_compute_features(work, encoder, pictures, copies, seed, log, backbone="lite2")
    if lite2_owners != owners:
        raise OmniSepError("The Lite2 and Lite0 picture features are of different pictures; delete the feature caches.")
    features = torch.cat([lite2, lite0], dim=1)
    _, classifier = lite_state_and_classifier("lite2")
    results, states = recogniser_loso(features, owners, pictures, label_list, anchors, classifier, name_anchors, sources, seeds, log)
    chosen, others = choose_bridge(results, sources, hold_out)
    log(f"recogniser ({seeds} heads): bridge weight {chosen[0]}, temperature {chosen[1]}; mean top-1 of the sources other "
        f"than {hold_out} {others:.3f}, {hold_out} {results[hold_out][chosen]['top1']:.3f}")
    record = {"seeds": seeds, "chosen": {"bridge_weight": chosen[0], "bridge_temperature": chosen[1]}, "others_mean_top1": others,
              "leave_one_source_out": {s: {"mix": results[s][chosen], "bridge": results[s][(1.0, chosen[1])],
                                           "mlp": results[s][(0.0, 1.0)]} for s in sources}}
    calibration = picture_calibration(features, owners, pictures, states, [s for s in sources if s != hold_out], chosen,
                                      classifier, name_anchors, label_list, anchors, recogniser=True)
    for left_out in sources:  # one per held-out style: honest SDRi rows and validation probes (scripts/val_soft_snap.py)
        from_head_states(states[left_out], classifier, name_anchors, *chosen).save(
            work / f"recogniser-without-{left_out}.safetensors", {"trained_on": f"without-{left_out}", **record})
    labels = [pictures[i].label for i in owners]
    every = [train_image_state(features, labels, dict(zip(label_list, anchors)), seed=k) for k in range(seeds)]
    from_head_states(every, classifier, name_anchors, *chosen).save(output, {"trained_on": "all", **record})
    log(f"wrote {output}")
    return record, calibration


V1_HEADS = Path(__file__).resolve().parent.parent / "pretrained" / "encoder-heads" / "heads.safetensors"  # the default
V2_HEADS = V1_HEADS.parent / "v2" / "heads.safetensors"  # shipped opt-in: get_encoder("bundled", heads="v2")


def write_v2_heads(path, image_head: ProjectionHead, v1_heads, v1_info: dict, training: dict) -> Path:
    """Heads version 2: the new image head, the version-1 audio head bit for bit, and the lineage."""
    from torch import nn

    heads = nn.ModuleDict({"audio": v1_heads["audio"], "image": image_head})
    supersedes = [{
        "heads_version": int(v1_info.get("heads_version", 1)),
        "heads_sha256": heads_sha256(v1_heads),
        "unchanged": {"audio": heads_sha256(v1_heads, ["audio"])},
        "changed": ["image"],
    }]
    return save_heads(path, heads, training={"image_head_v2": training, "audio_head": v1_info.get("training", {})},
                      heads_version=2, supersedes=supersedes)


if __name__ == "__main__":
    sys.exit(main())
