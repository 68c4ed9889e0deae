"""What Query-Aug should hand the Separate-Net for a description it is unsure of, on VALIDATION mixtures.

Query-Aug v2 snaps a description it recognises to its label's row and leaves
one it calls unknown as it is. An unsure answer often has the right class
among its first few (the held-out descriptions' top-1 is 0.78, their top-3
0.9), and the Separate-Net was trained with Query-Mixup, so a blend of the
first rows, weighed by their probabilities, separates each candidate in
proportion to the belief in it. This scores, with the model's inference
settings (query contrast, second look), per mixture the description of its
target class from ``descriptions-val-casual.json`` (three per class, taken in
turn):

* ``label``: the class name (the reference the gap is measured to);
* ``raw``: the description as it is;
* ``v2``: what the API does now (snapped when known, else as it is);
* ``always``: always snapped to the best class;
* ``blend kK tT``: the first K classes' rows weighed by ``p ** (1 / T)``
  (renormalised), for every query;
* ``unsure kK tT``: snapped when known, the blend when unknown;
* ``hedge kK tT``: snapped when known, half the blend and half the
  description as it is when unknown;
* ``blend+hedge kK tT``: the blend when known, half the blend and half the
  description as it is when unknown.

* ``scan-topN bB``: as ``scan bB``, the evidence weighing only the query's first N classes.
* ``scan bB`` / ``scan-blend bB``: the mixture as evidence. The description's
  class probabilities times ``(0.05 + presence) ** B``, the presence the
  model's scan gives each class in this mixture (as ``omnisep scan`` and
  ``--negative auto`` get it), then the best class snapped / the first two
  blended by the product.

``--forms`` picks the forms to score (``label``, ``raw`` and ``v2`` always).

``--pictures RECOGNISER`` asks the same of picture queries: each mixture's
target picture from the corpus (Twemoji), embedded by the model's heads
(``raw``) and recognised by ``RECOGNISER`` (one that never saw Twemoji:
``runs/querynet/recogniser-without-twemoji.safetensors``) with the picture
matcher's calibration (``--pictures-calibration``); ``--pictures-source
STYLE`` takes the pictures from a style instead (the recogniser without it).

    python scripts/val_soft_snap.py --every 2
    python scripts/val_soft_snap.py --every 2 --mixtures corpus/mixtures_shift.jsonl --manifest corpus/manifest-shift.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def blend(probabilities: torch.Tensor, rows: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    top = probabilities.topk(k)
    weights = top.values ** (1.0 / temperature)
    weights = weights / weights.sum()
    return (weights[:, None] * rows[top.indices]).sum(0)


def scan_presence(model_path: Path, test_set, mixtures, labels) -> dict:
    """Per mixture, the presence ``[C]`` (in ``labels``' order) the model's verified scan gives each class."""
    from omnisep.data.mixing import MixtureDataset
    from omnisep.evaluation.auto_negative import _OnePass
    from omnisep.querynet.report import _Zeros
    from omnisep.scan import verification_for
    from omnisep.states import load_checkpoint

    loaded = load_checkpoint(model_path)
    verification = verification_for(loaded, model_path)
    model = loaded.model.eval()
    dataset = MixtureDataset(test_set.items, _Zeros(model.config.emb_dim), training=False, num_sources=2, mixtures=test_set.mixtures)
    order = [list(loaded.bank.labels).index(label) for label in labels]
    found = {}
    for done, m in enumerate(mixtures):
        mixture = dataset[m]["mixture"]
        result = _OnePass(model, mixture).scan(loaded.bank, mixture.numpy(), verification=verification)
        found[m] = torch.as_tensor(np.asarray(result.presence, dtype=np.float32))[order]
        if (done + 1) % 50 == 0:
            print(f"  scanned {done + 1}/{len(mixtures)} mixtures", flush=True)
    return found


def stored_presence(path: Path, mixtures, labels, key: str = "presence") -> dict:
    """:func:`scan_presence`, read from ``scripts/probe_interferer.py``'s output (the same scan, the same model);
    ``key="tags"``: the sound tagger's probabilities on the mixture instead (no separation needed)."""
    data = np.load(path)
    order = [list(data["labels"]).index(label) for label in labels]
    rows = {int(index): row for index, row in zip(data["index"], data[key])}
    missing = [m for m in mixtures if m not in rows]
    if missing:
        raise SystemExit(f"{path} has no scan of mixtures {missing[:5]}: run the probe with the same --every")
    return {m: torch.as_tensor(rows[m][order], dtype=torch.float32) for m in mixtures}


def labels_of(test_set) -> list[str]:
    return sorted({item.label for item in test_set.items})


def main() -> None:
    from omnisep.data.mixtures import load_test_set
    from omnisep.encoders.bundled import BundledEncoder
    from omnisep.querynet.image_head import V1_HEADS
    from omnisep.querynet.report import sdri_rows
    from omnisep.querynet.words import CONFIGS, ClassMatcher

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="src/omnisep/pretrained/v3")
    parser.add_argument("--mixtures", default="corpus/mixtures_val.jsonl")
    parser.add_argument("--manifest", default="corpus/manifest.jsonl")
    parser.add_argument("--descriptions", default=str(CONFIGS / "querynet" / "descriptions-val-casual.json"))
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--forms", default="always,blend k2 t1,unsure k2 t1,blend k2 t0.5,unsure k2 t0.5,blend k3 t1,"
                        "unsure k3 t1,blend k3 t0.5,unsure k3 t0.5,hedge k3 t1", help="comma-separated form names")
    parser.add_argument("--pictures", default=None, help="a picture recogniser: score picture queries instead")
    parser.add_argument("--pictures-source", default=None,
                        help="take the pictures from this style (e.g. openmoji; the recogniser must be one without it)")
    parser.add_argument("--pictures-calibration", default="runs/querynet/picture-calibration.json")
    parser.add_argument("--out", default=None, help="write the per-mixture SDRi here (JSON)")
    parser.add_argument("--presence", default=None,
                        help="the scans' presence from scripts/probe_interferer.py (its .npz) instead of scanning again")
    parser.add_argument("--presence-key", default="presence", choices=("presence", "tags"),
                        help="with --presence: the scan's presence, or the tagger's probabilities on the mixture")
    args = parser.parse_args()

    torch.set_num_threads(1)
    encoder = BundledEncoder(V1_HEADS)
    test_set = load_test_set(Path(args.mixtures), Path(args.manifest))
    target_label = lambda m: test_set.items[test_set.mixtures[m][0]].label  # noqa: E731
    if args.pictures:
        from omnisep.encoders.recogniser import PictureRecogniser
        from omnisep.images import load_image

        matcher = ClassMatcher.for_pictures(calibration=args.pictures_calibration)
        recogniser = PictureRecogniser.load(args.pictures, encoder=encoder)
        if args.pictures_source:
            from omnisep.querynet.pictures import collect_pictures, flatten

            styled: dict = {}
            for picture in collect_pictures(labels_of(test_set), sources=[args.pictures_source], log=lambda *a: None):
                styled.setdefault(picture.label, []).append(picture)
            mixtures = [m for m in range(0, len(test_set.mixtures), args.every) if target_label(m) in styled]
            chosen = {m: f"{target_label(m)}#{(m // args.every) % len(styled[target_label(m)])}" for m in mixtures}
            keys = sorted(set(chosen.values()))
            pictures = [flatten(styled[k.split("#")[0]][int(k.split("#")[1])].rgba) for k in keys]
        else:
            mixtures = [m for m in range(0, len(test_set.mixtures), args.every) if test_set.items[test_set.mixtures[m][0]].image]
            chosen = {m: str(test_set.items[test_set.mixtures[m][0]].image) for m in mixtures}
            keys = sorted(set(chosen.values()))
            pictures = [load_image(k) for k in keys]
        vectors = dict(zip(keys, encoder.embed_image(pictures)))
        with torch.no_grad():
            probes = dict(zip(keys, F.normalize(recogniser(recogniser.features(pictures)), dim=-1)))
    else:
        described = json.loads(Path(args.descriptions).read_text())
        matcher = ClassMatcher.load()
        mixtures = [m for m in range(0, len(test_set.mixtures), args.every) if target_label(m) in described]
        chosen = {m: described[target_label(m)][(m // args.every) % len(described[target_label(m)])] for m in mixtures}
        keys = sorted(set(chosen.values()))
        vectors = dict(zip(keys, encoder.embed_text(keys)))
        probes = vectors
    labels = list(matcher.labels)
    rows = F.normalize(encoder.embed_text(labels), dim=-1)
    row = dict(zip(labels, rows))
    words = (lambda k: None) if args.pictures else (lambda k: [k])  # a description's words count (omnisep.lexical)
    matches = {k: matcher.match(probes[k][None], words(k))[0] for k in keys}
    probabilities = {k: matcher.probabilities(probes[k][None], words(k))[0] for k in keys}

    presence = {}
    if any(name.strip().startswith("scan") for name in args.forms.split(",")):
        presence = (stored_presence(Path(args.presence), mixtures, labels, args.presence_key) if args.presence
                    else scan_presence(Path(args.model), test_set, mixtures, labels))

    def form(kind, k=1, t=1.0):
        def make(m):
            text = chosen[m]
            q, match, p = vectors[text], matches[text], probabilities[text]
            if kind == "label":
                return row[target_label(m)]
            if kind == "raw":
                return q
            if kind == "v2":
                return row[match.label] if match.known else q
            if kind == "always":
                return row[match.label]
            if kind == "blend":
                return blend(p, rows, k, t)
            if kind in ("scan", "scan-blend"):
                fused = p * (0.05 + presence[m]) ** k
                return blend(fused, rows, 1 if kind == "scan" else 2, 1.0)
            if kind.startswith("scan-top"):  # the evidence weighs only the first N classes of the query
                fused = p * (0.05 + presence[m]) ** k
                fused = fused.masked_fill(p < p.topk(int(kind[len("scan-top"):])).values[-1], 0.0)
                return blend(fused, rows, 1, 1.0)
            if kind in ("unsure", "hedge", "blend+hedge"):
                mixed = blend(p, rows, k, t)
                if match.known:
                    return mixed if kind == "blend+hedge" else row[match.label]
                return mixed if kind == "unsure" else 0.5 * mixed + 0.5 * F.normalize(q, dim=-1)
            raise ValueError(kind)
        return make

    forms = {"label": form("label"), "raw": form("raw"), "v2": form("v2")}
    for name in args.forms.split(","):
        kind, *rest = name.strip().split()
        k, t = (float(rest[0][1:]) if kind.startswith("scan") else int(rest[0][1:]), float(rest[1][1:]) if len(rest) > 1 else 1.0) if rest else (1, 1.0)
        forms[name.strip()] = form(kind, k, t)
    known = sum(matches[chosen[m]].known for m in mixtures)
    right = sum(matches[chosen[m]].label == target_label(m) for m in mixtures)
    print(f"{len(mixtures)} mixtures, {len(keys)} {'pictures' if args.pictures else 'descriptions'}; "
          f"answered {known}, top-1 right {right}")
    scores = sdri_rows(Path(args.model), test_set, forms, mixtures, log=print)
    by = {key: dict(values) for key, values in scores.items()}
    common = sorted(set.intersection(*(set(v) for v in by.values())))
    label = np.array([by["label"][m] for m in common])
    raw = np.array([by["raw"][m] for m in common])
    v2 = np.array([by["v2"][m] for m in common])
    print(f"\n{len(common)} mixtures ({args.mixtures})\n")
    print("| form | SDRi (dB) | paired vs v2 (mean ± SEM) | gap closed |")
    print("|---|---:|---:|---:|")
    for key in forms:
        x = np.array([by[key][m] for m in common])
        d = x - v2
        closed = (x.mean() - raw.mean()) / max(1e-9, label.mean() - raw.mean())
        print(f"| {key} | {x.mean():.2f} | {d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f} | {100 * closed:.0f} % |")
    if args.out:
        Path(args.out).write_text(json.dumps({key: by[key] for key in forms}, indent=1))


if __name__ == "__main__":
    main()
