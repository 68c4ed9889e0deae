"""Which witness of presence ranks a mixture's true labels higher: the scan or the query encoder?

For the first N mixtures of a mixture list (built as the protocol builds them),
the bundled encoder embeds the whole mixture as an audio query and ranks the
model's bank labels by cosine; a true label's rank (1..40) is compared with
its rank in the scan (omnisep.scan, separated energy). Slow: the audio
backbone costs about 2 s of CPU per 4 s mixture on the 2-core machine.

    python benchmarks/presence_evidence.py corpus/mixtures_val.jsonl --limit 120
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mixtures")
    parser.add_argument("--model", default="default")
    parser.add_argument("--limit", type=int, default=120)
    args = parser.parse_args()

    from omnisep.data.mixtures import load_test_set
    from omnisep.encoders import recorded_encoder
    from omnisep.data.mixing import protocol_mixture
    from omnisep.pretrained import resolve_model
    from omnisep.scan import scan
    from omnisep.spectral import SAMPLE_RATE
    from omnisep.states import load_checkpoint

    checkpoint = load_checkpoint(resolve_model(args.model))
    labels = list(checkpoint.bank.labels)
    test_set = load_test_set(args.mixtures)
    encoder = recorded_encoder(checkpoint.config["encoder"])
    mixtures, truth = [], []
    for row in test_set.mixtures[: args.limit]:
        mixtures.append(protocol_mixture(test_set, row)[1])
        truth.append([labels.index(test_set.items[i].label) for i in row])
    started = time.perf_counter()
    embedded = torch.nn.functional.normalize(encoder.embed_audio(mixtures, sample_rate=SAMPLE_RATE), dim=-1)
    encoder_seconds = time.perf_counter() - started
    encoder_scores = (embedded @ checkpoint.bank.embeddings.T).numpy()
    # The plain scan (separated energy), the witness this benchmark compares the encoder with.
    scan_scores = np.stack([scan(checkpoint, mixture, SAMPLE_RATE, verify=False).presence for mixture in mixtures])

    def ranks(scores):
        order = np.argsort(-scores, axis=1)
        return np.array([[int(np.flatnonzero(order[n] == t)[0]) + 1 for t in true] for n, true in enumerate(truth)])

    print(f"{len(mixtures)} mixtures of {args.mixtures}; {len(labels)} labels; encoder {encoder_seconds / len(mixtures):.2f} s per mixture")
    print("| witness | median rank of a true label | true label in the top 3 | top 5 |")
    print("|---|---|---|---|")
    for name, scores in (("scan (separated energy)", scan_scores), ("encoder (mixture as audio query)", encoder_scores)):
        r = ranks(scores)
        print(f"| {name} | {np.median(r):g} | {np.mean(r <= 3):.1%} | {np.mean(r <= 5):.1%} |")


if __name__ == "__main__":
    main()
