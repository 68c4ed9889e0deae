"""Probe: which evidence names the other sound of a two-source mixture, given the queried one?

For every N-th mixture of a list (text queries, the model as the API runs it) this stores, per
bank label: the verified scan's presence, the tagger's probability on the mixture, and scores
conditioned on the query: how well the label's separated estimate matches what the plain query
leaves (its magnitude spectrogram), and how much of it overlaps the query's own estimate. The
arrays go to an .npz; ``--analyse`` prints the hit rate (the label chosen is the interferer's)
of each score and of products of them. A probe, not product code: whatever wins moves into
``omnisep.negatives`` and is measured with ``omnisep evaluate-auto-negative``.

    python scripts/probe_interferer.py corpus/mixtures_val.jsonl --manifest corpus/manifest.jsonl --every 2 --out runs/probe-int/val.npz
    python scripts/probe_interferer.py --analyse runs/probe-int/val.npz
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

N_FFT, HOP = 1024, 256
SIMILARITY_GUARD = 0.55


def magnitudes(waves: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(waves, np.float32))
    return torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs()


def collect(args) -> None:
    from tqdm import tqdm

    from omnisep import negatives
    from omnisep.data.mixing import MixtureDataset
    from omnisep.data.mixtures import load_test_set
    from omnisep.evaluation.auto_negative import _BankTable, _OnePass
    from omnisep.queries import QueryRows, background_query, contrast_terms, normalize
    from omnisep.scan import scan_estimates, verification_for
    from omnisep.states import contrast_strength, load_checkpoint, second_look_gate

    loaded = load_checkpoint(args.checkpoint)
    model, bank = loaded.model.eval(), loaded.bank
    verification = verification_for(loaded, args.checkpoint)
    strength = contrast_strength(loaded.config, args.checkpoint)
    background = background_query(bank.embeddings) if strength > 0 else None
    gate = second_look_gate(loaded.config, args.checkpoint)
    test_set = load_test_set(args.mixtures, args.manifest)
    table = _BankTable(test_set.items, bank)
    dataset = MixtureDataset(test_set.items, table, training=False, num_sources=2, mixtures=test_set.mixtures)
    rows = normalize(torch.as_tensor(bank.embeddings, dtype=torch.float32))
    labels = list(bank.labels)
    out = {k: [] for k in ("index", "own", "other", "presence", "tags", "match", "claim", "overlap", "exclusive", "similarity")}
    for index in tqdm(range(args.offset, len(test_set.mixtures), args.every)):
        example = dataset[index]
        mixture = example["mixture"]
        target_item, interferer_item = test_set.mixtures[index][:2]
        own, other = labels.index(test_set.items[target_item].label), labels.index(test_set.items[interferer_item].label)
        query = rows[own]
        one_pass = _OnePass(model, mixture)
        wave = mixture.numpy()
        everyone = one_pass.separate(rows, wave.size)
        scanned = scan_estimates(labels, everyone, wave, verification=verification)  # = one_pass.scan, one pass
        plain = one_pass.separate(QueryRows.from_terms([contrast_terms([(query, 1.0)], background, strength)], gate), wave.size)[0]
        window = 4 * 16000
        tags = np.max([verification.tag(wave[s : s + window]) for s in range(0, max(1, wave.size - window // 4), window)], axis=0)
        mix_m, target_m, rest_m = magnitudes(wave), magnitudes(plain), magnitudes(wave - plain)
        est_m = magnitudes(everyone)  # [N, F, T]
        power = est_m**2
        rest_flat = rest_m.sqrt().flatten()
        match = torch.nn.functional.cosine_similarity(est_m.sqrt().flatten(1), rest_flat[None], dim=1)
        claim = torch.minimum(est_m, rest_m[None]).pow(2).sum((1, 2)) / rest_m.pow(2).sum().clamp_min(1e-12)
        overlap = torch.minimum(est_m, target_m[None]).pow(2).sum((1, 2)) / power.sum((1, 2)).clamp_min(1e-12)
        rest_rules = (rest_m > target_m).float()
        exclusive = (power * rest_rules).sum((1, 2)) / (mix_m.pow(2) * rest_rules).sum().clamp_min(1e-12)
        for key, value in (("index", index), ("own", own), ("other", other), ("presence", scanned.presence), ("tags", tags),
                           ("match", match.numpy()), ("claim", claim.numpy()), ("overlap", overlap.numpy()),
                           ("exclusive", exclusive.numpy()), ("similarity", negatives.similarities(query, bank).numpy())):
            out[key].append(np.asarray(value))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, labels=np.array(labels), **{k: np.stack(v) for k, v in out.items()})


def hit_rate(score: np.ndarray, data) -> float:
    score = score.copy()
    n = score.shape[0]
    blocked = data["similarity"] >= SIMILARITY_GUARD
    blocked[np.arange(n), data["own"]] = True
    score[blocked] = -np.inf
    return float((score.argmax(1) == data["other"]).mean())


def analyse(paths) -> None:
    for path in paths:
        data = dict(np.load(path))
        eps = 1e-4
        base = {
            "presence (scan, default)": data["presence"],
            "tags": data["tags"],
            "match": data["match"],
            "claim": data["claim"],
            "exclusive": data["exclusive"],
            "claim*(1-overlap)": data["claim"] * (1 - data["overlap"]),
        }
        print(f"\n{path}: {data['own'].size} mixtures")
        for name, score in base.items():
            print(f"  {name:34s} {hit_rate(score, data):.3f}")
        for (a, sa), (b, sb) in itertools.combinations(base.items(), 2):
            print(f"  {a + ' x ' + b:60s} {hit_rate((sa + eps) * (sb + eps), data):.3f}")
        for p in (0.5, 1, 2):
            print(f"  tags * claim*(1-overlap)^{p:g}           {hit_rate(data['tags'] * (base['claim*(1-overlap)'] + eps) ** p, data):.3f}")
            print(f"  presence * exclusive^{p:g}                {hit_rate(data['presence'] * (data['exclusive'] + eps) ** p, data):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mixtures", nargs="?")
    parser.add_argument("--manifest")
    parser.add_argument("--checkpoint", default="src/omnisep/pretrained/v3")
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--offset", type=int, default=0, help="start at this mixture (--every 2 --offset 1: the other half)")
    parser.add_argument("--out")
    parser.add_argument("--analyse", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.analyse:
        analyse(args.analyse)
    else:
        collect(args)


if __name__ == "__main__":
    main()
