"""How the scan should weigh the sound tagger (omnisep.tagger) against what it separates and hears.

Reads what ``scripts/scan_verify_sweep.py collect`` kept for each mixture of a
list (every label's plain presence, the encoder's embeddings of the 12 most
present labels' separated audio), adds the tagger's probabilities for the same
mixtures (its window is the whole 4.1 s protocol mixture, as in the scan), and
scores each way of combining them without separating again:

* ranking: is the top label present; AUC of present against absent labels;
* ``other``: the best label *other than the queried one* is the interferer,
  which is what the automatic negative query subtracts.

    python scripts/scan_verify_sweep.py collect src/omnisep/pretrained/v2 corpus/mixtures_val.jsonl runs/verify-val2.npz --every 2 --limit 1000
    python scripts/scan_tagger_sweep.py runs/verify-val2.npz corpus/mixtures_val.jsonl --every 2 --tagger runs/tagger/tagger.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def tagger_probabilities(tagger_path: str, mixtures: str, indices, labels, rows, manifest: str | None = None) -> np.ndarray:
    """``[M, L]`` the tagger's probability of each bank label for the listed mixtures (protocol mixing),
    computed as the scan computes it (``scan.Verification.tag``)."""
    from omnisep.data.mixing import protocol_mixture
    from omnisep.data.mixtures import load_test_set
    from omnisep.scan import Verification
    from omnisep.tagger import load_tagger

    tagging = Verification(None, torch.as_tensor(rows), listen=False, tagger=load_tagger(tagger_path), labels=list(labels))
    test_set = load_test_set(mixtures, manifest)
    return np.stack([tagging.tag(protocol_mixture(test_set, test_set.mixtures[index])[1]) for index in indices])


def main() -> None:
    from omnisep.data.mixtures import load_test_set
    from omnisep.evaluation.usage import _auc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collected"), parser.add_argument("mixtures")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--tagger", required=True)
    parser.add_argument("--manifest", default=None, help="the items' manifest (default: manifest.jsonl beside the list)")
    parser.add_argument("--power", type=float, default=2.0, help="the listening power the model records")
    args = parser.parse_args()
    data = np.load(args.collected)
    labels = list(data["labels"])
    presence, order, truth = data["presence"], data["top"], data["truth"]
    test_set = load_test_set(args.mixtures, args.manifest)
    indices = list(range(0, len(test_set.mixtures), args.every))[: len(presence)]
    queried = np.array([labels.index(test_set.items[test_set.mixtures[i][0]].label) for i in indices])
    probability = tagger_probabilities(args.tagger, args.mixtures, indices, labels, data["rows"], args.manifest)
    heard = data["heard"] / np.linalg.norm(data["heard"], axis=-1, keepdims=True)
    own = np.clip(np.einsum("nkd,nkd->nk", heard, data["rows"][order]), 0, 1)
    verified = presence * 1e-4
    np.put_along_axis(verified, order, np.take_along_axis(presence, order, 1) * own ** args.power, 1)

    print(f"{len(presence)} mixtures ({args.mixtures}, every {args.every})\n")
    print("| evidence | top label present | AUC within a mixture | best other label = interferer |")
    print("|---|---:|---:|---:|")

    def show(name, score):
        top = truth[np.arange(len(score)), score.argmax(1)].mean()
        auc = np.nanmean([_auc(s, list(np.flatnonzero(t))) for s, t in zip(score, truth)])
        masked = score.copy()
        masked[np.arange(len(score)), queried] = -np.inf
        other = truth[np.arange(len(score)), masked.argmax(1)].mean()
        print(f"| {name} | {top:.3f} | {auc:.3f} | {other:.3f} |")

    show("separated energy (plain scan)", presence)
    show(f"verified scan (12 labels, power {args.power:g}; v2's default)", verified)
    show("tagger alone", probability)
    for power in (0.5, 1.0, 2.0):
        show(f"plain scan x tagger^{power:g}", presence * probability ** power)
    for power in (0.5, 1.0, 2.0):
        show(f"verified scan x tagger^{power:g}", verified * probability ** power)


if __name__ == "__main__":
    main()
