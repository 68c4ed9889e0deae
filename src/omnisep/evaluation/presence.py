"""Precision and recall of the scan's "what is in here, and when" on fixed mixtures.

Each mixture of a mixture list (target + interferers, built as the protocol
builds them: centre 65,535 samples of each clip, divided by the number of
sources) is scanned (:func:`omnisep.scan.scan`, 0.5 s frames). Truth:

* **clip level**: the labels of the mixture's sources are present, every
  other bank label is absent; a label is predicted present when its presence
  reaches the threshold. Precision and recall are pooled over all
  (mixture, label) pairs.
* **frame level**: a source's label is active in an audible frame when the
  source carries at least ``ACTIVE_SHARE`` of the mixture's energy there; a
  label is predicted in a frame when its energy ratio reaches the threshold.

``best_threshold`` picks the threshold with the best clip-level F1 on the
VALIDATION mixtures; the test mixtures are only scored at that threshold.

    omnisep evaluate-presence run MODEL corpus/mixtures_val.jsonl --out val.npz
    omnisep evaluate-presence report val.npz test.npz --out docs/results/scan-presence
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from omnisep.errors import OmniSepError

ACTIVE_SHARE = 0.1  # a source heard at -10 dB under the mixture counts as sounding in that frame
# Finer at the low end, where a verified scan's evidence (energy share x similarity^2) lives.
THRESHOLDS = tuple(np.round(np.concatenate([np.arange(0.01, 0.1, 0.005), np.arange(0.1, 0.96, 0.025)]), 3))


def scan_mixtures(checkpoint, mixtures, manifest=None, limit: int | None = None, frame_seconds: float = 0.5, progress=True,
                  verify: bool = True, every: int = 1) -> dict:
    """Scan every mixture (verified when the model records a verification and ``verify``); returns arrays
    (presence, evidence per frame as ``ratios``, truth) for :func:`score`.

    ``every``: only every N-th mixture, then the first ``limit`` of those. The lists are ordered by target
    class, so a stride samples every class where "the first N" covers only the first few."""
    from omnisep.data.mixing import protocol_mixture
    from omnisep.data.mixtures import load_test_set
    from omnisep.scan import scan, verification_for
    from omnisep.spectral import SAMPLE_RATE
    from omnisep.states import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    verification = verification_for(loaded, checkpoint) if verify else None
    labels = list(loaded.bank.labels)
    test_set = load_test_set(mixtures, manifest)
    if every < 1:
        raise OmniSepError(f"--every must be at least 1, got {every}.")
    indices = list(range(0, len(test_set.mixtures), every))[:limit]
    count = len(indices)
    frame = round(frame_seconds * SAMPLE_RATE)
    presence, ratios, audible, truth_clip, truth_frame = [], [], [], [], []
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, unit="mixture", desc="scan", dynamic_ncols=True)
    for index in indices:
        row = test_set.mixtures[index]
        sources, mixture = protocol_mixture(test_set, row)
        result = scan(loaded, mixture, SAMPLE_RATE, frame_seconds, verify=verification or False)
        n_frames = result.energy_ratio.shape[1]
        padded = np.zeros((len(row), n_frames * frame))
        padded[:, : sources.shape[1]] = sources
        source_energy = np.square(padded).reshape(len(row), n_frames, frame).sum(-1)
        mixture_energy = np.square(np.pad(mixture.astype(np.float64), (0, n_frames * frame - mixture.size))).reshape(n_frames, frame).sum(-1)
        clip = np.zeros(len(labels), bool)
        frames = np.zeros((len(labels), n_frames), bool)
        for n, i in enumerate(row):
            label = test_set.items[i].label
            if label in labels:
                position = labels.index(label)
                clip[position] = True
                frames[position] |= (source_energy[n] >= ACTIVE_SHARE * mixture_energy) & result.audible
        presence.append(result.presence)
        ratios.append(result.evidence)
        audible.append(result.audible)
        truth_clip.append(clip)
        truth_frame.append(frames)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {
        "labels": np.array(labels),
        "presence": np.stack(presence),
        "ratios": np.stack(ratios),  # [N, L, F]: every 65,535-sample mixture has the same frame count
        "audible": np.stack(audible),
        "truth_clip": np.stack(truth_clip),
        "truth_frame": np.stack(truth_frame),
        "seconds": np.array(time.perf_counter() - started),
        "verified": np.array(verification is not None),
        "verification": np.array("" if verification is None else verification.describe()),
        "every": np.array(every),
    }


def _prf(predicted: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    fn = int((~predicted & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def score(data: dict, threshold: float) -> dict:
    """Clip- and frame-level precision/recall/F1 at one threshold, plus how often the truth is the top 2."""
    clip = _prf(data["presence"] >= threshold, data["truth_clip"])
    mask = np.broadcast_to(data["audible"][:, None, :], data["ratios"].shape)
    frame = _prf((data["ratios"] >= threshold)[mask], data["truth_frame"][mask])
    order = np.argsort(-data["presence"], axis=1)
    sources = data["truth_clip"].sum(1)
    top = np.mean([set(order[i, : sources[i]]) == set(np.flatnonzero(data["truth_clip"][i])) for i in range(len(order))])
    found = (data["presence"] >= threshold).sum(1)
    return {"threshold": float(threshold), "clip": clip, "frame": frame, "truth_is_top": float(top),
            "labels_found_per_mixture": float(found.mean()), **ranking_scores(data)}


def ranking_scores(data: dict) -> dict:
    """Threshold-free, as the usage report defines them: is the top-ranked label present, and how often
    a present label outranks an absent one (AUC within each mixture, averaged)."""
    from omnisep.evaluation.usage import _auc

    presence, truth = data["presence"], data["truth_clip"]
    top = truth[np.arange(len(presence)), presence.argmax(1)]
    aucs = [_auc(p, list(np.flatnonzero(t))) for p, t in zip(presence, truth) if t.any()]
    return {"top_label_present": float(top.mean()), "auc": float(np.nanmean(aucs))}


def best_threshold(data: dict, thresholds=THRESHOLDS) -> float:
    return float(max(thresholds, key=lambda t: (score(data, t)["clip"]["f1"], -t)))


def load(path) -> dict:
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def save(data: dict, path) -> Path:
    """Write :func:`scan_mixtures`' arrays as one ``.npz``, atomically (the folder is made if needed)."""
    from omnisep import fileio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with fileio.output_errors(path), fileio.atomic_path(path) as temp, open(temp, "wb") as handle:
        np.savez_compressed(handle, **data)
    return path


def write_report(validation, test, out) -> str:
    """Choose the threshold on the ``validation`` scans (best clip-level F1) and report the ``test`` scans there.

    Writes OUT/results.md, OUT/summary.json and OUT/presence_curves.png; returns the Markdown.
    """
    from omnisep import fileio
    from omnisep.evaluation.reports import describe_sample
    from omnisep.plotting.presence import plot_presence_curves

    val, tst = load(validation), load(test)
    chosen = best_threshold(val)
    curves = {"validation": [score(val, t) for t in THRESHOLDS], "test": [score(tst, t) for t in THRESHOLDS]}
    at = {"validation": score(val, chosen), "test": score(tst, chosen)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_presence_curves(curves, chosen, out / "presence_curves.png")
    lines = [
        "# Scan: precision and recall of presence",
        "",
        f"Threshold chosen on the validation mixtures (best clip-level F1): **{chosen:g}**.",
        "",
        "| mixtures | level | precision | recall | F1 | labels found per mixture | true labels = top ranked |",
        "|---|---|---|---|---|---|---|",
    ]
    sizes = {name: describe_sample(len(data["presence"]), int(data.get("every", 1)), whole_list=True)
             for name, data in (("validation", val), ("test", tst))}
    for name, result in at.items():
        for level in ("clip", "frame"):
            r = result[level]
            extra = f"{result['labels_found_per_mixture']:.1f} | {result['truth_is_top']:.1%}" if level == "clip" else " | "
            lines.append(f"| {name} ({sizes[name]}) | {level} "
                         f"| {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {extra} |")
    verified = {bool(data.get("verified", False)) for data in (val, tst)}
    how = {str(data["verification"]) for data in (val, tst) if "verification" in data}
    how = how.pop() if len(how) == 1 else "the model's query encoder listened to the top labels"  # files before the field
    lines.append("\nThe scan was " + (f"verified ({how}; omnisep.scan.Verification)." if verified == {True} else
                                       "plain (no verification)." if verified == {False} else
                                       "verified for one list and plain for the other: not comparable."))
    for name, data in (("validation", val), ("test", tst)):
        ranking = ranking_scores(data)
        lines.append(f"\n{name}: the top-ranked label is present in {ranking['top_label_present']:.1%} of the mixtures; "
                     f"a present label outranks an absent one {ranking['auc']:.1%} of the time (AUC within a mixture).")
        order = np.argsort(-data["presence"], axis=1)
        ranks = [int(np.flatnonzero(order[i] == j)[0]) + 1 for i in range(len(order)) for j in np.flatnonzero(data["truth_clip"][i])]
        lines.append(f"\n{name}: a true label's median rank among the {data['presence'].shape[1]} labels is {np.median(ranks):g} "
                     f"(random ranking: {(data['presence'].shape[1] + 1) / 2:g}); precision of guessing every label "
                     f"(the share of true (mixture, label) pairs): {data['truth_clip'].mean():.3f}.")
    lines += ["", "![precision and recall against the threshold](presence_curves.png)", ""]
    text = "\n".join(lines)
    fileio.write_text(out / "results.md", text)
    fileio.write_json(out / "summary.json", {"threshold": chosen, "at_threshold": at, "curves": curves})
    return text
