"""What weighing a picture query by what the mixture holds costs (picture Query-Aug's ``mixture_evidence``).

    python benchmarks/picture_evidence_speed.py [--seconds 60] [--threads 2]

Separates ``--seconds`` of the bundled ``dog_and_violin.wav`` (looped) with the
bundled violin picture several ways, each once after an untimed warm-up: the
picture's own embedding (``query_aug=False``), snapped without the evidence (the
matcher's power removed), and as shipped (one sound-tagger pass over the
mixture, then the snap; a confident picture has no contenders and the tagger
does not run, so a flattened matcher shows an unsure one), and with an
automatic negative. Then the evidence alone: the tagger pass
(``omnisep.scan.mixture_tags``) against the scan of the same labels that
shipped before it (``scan(..., labels=)``). Prints the labels that could still
win for the picture, seconds, real-time factor and the label each gave.
Compare only within one run.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main() -> None:
    from omnisep.api import Query, Separator
    from omnisep.negatives import AutoNegative
    from omnisep.scan import mixture_tags, scan

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    audio, rate = sf.read(EXAMPLES / "dog_and_violin.wav", dtype="float32", always_2d=True)
    audio = np.tile(audio.T, (1, int(np.ceil(args.seconds * rate / audio.shape[0]))))[:, : int(args.seconds * rate)]
    separator = Separator("default")
    picture = EXAMPLES / "queries" / "playing-violin.png"
    recogniser, matcher = separator._picture_query_aug()
    blind = copy.copy(matcher)
    blind.evidence_power = None
    unsure = copy.copy(matcher)
    unsure.temperature = matcher.temperature * 20  # as unsure as a picture gets: many labels could still win
    separator.separate_many(audio[:, : rate * 4], rate, [Query(image=picture)])  # warm-up: loads every part
    rows = []
    for name, query_aug, used in (("the picture's own embedding", False, matcher), ("snapped, no evidence", None, blind),
                                  ("as shipped, a confident picture", None, matcher),
                                  ("as shipped, probabilities flattened 20x", None, unsure),
                                  ("as shipped, with --negative auto (one scan of every label)", None, matcher)):
        separator._pictures = (recogniser, used)
        query = Query(image=picture, query_aug=query_aug, auto_negative=AutoNegative() if "negative" in name else None)
        scanned = len(separator.prepare([query])[0].query_aug_match["contenders"]) if query_aug is None else 0
        started = time.perf_counter()
        result = separator.separate_many(audio, rate, [query])[0]
        seconds = time.perf_counter() - started
        rows.append((name, scanned, seconds, args.seconds / seconds, result.query_label))
    separator._pictures = (recogniser, unsure)
    contenders = list(separator.prepare([Query(image=picture)])[0].query_aug_match["contenders"])
    separator._pictures = (recogniser, matcher)
    evidence = []
    for name, run in (("the sound tagger over the mixture (shipped)", lambda: mixture_tags(separator.mixture_tagger(), audio, rate)),
                      ("a scan of 3 labels (shipped before)", lambda: scan(separator, audio, rate, labels=contenders[:3])),
                      (f"a scan of the {len(contenders)} contenders", lambda: scan(separator, audio, rate, labels=contenders))):
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        evidence.append((name, seconds, args.seconds / seconds))
    print(f"| picture query ({args.seconds:g} s of audio, {args.threads} threads) | labels that could still win | seconds | x real time | label |")
    print("|---|---:|---:|---:|---|")
    for name, scanned, seconds, speed, label in rows:
        print(f"| {name} | {scanned} | {seconds:.1f} | {speed:.1f} | {label} |")
    print(f"\n| the evidence alone ({args.seconds:g} s of audio, {args.threads} threads) | seconds | x real time |")
    print("|---|---:|---:|")
    for name, seconds, speed in evidence:
        print(f"| {name} | {seconds:.1f} | {speed:.1f} |")


if __name__ == "__main__":
    main()
