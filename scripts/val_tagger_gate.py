"""Probe (issue 15): let the sound tagger open the second look, measured on VALIDATION mixtures, text queries.

The shipped second look (``inference.second_look``) opens only for outputs under an energy gate, so the
typical absent query (about -14 dB) is never looked at again and the median absent energy does not move.
Here the gate also opens when the sound tagger gives the queried label a probability under ``tau`` in the
mixture (the scan's tagger, one backbone pass per 4 s). Scored for the target's text query (SDRi, paired
against the shipped behaviour) and for an absent label's text query (energy returned, mean and median).

    python scripts/val_tagger_gate.py --every 4
    python scripts/val_tagger_gate.py --every 4 --mixtures corpus/mixtures_shift.jsonl \\
        --manifest corpus/manifest-shift.jsonl --cache runs/cache-shift
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from val_inference_modes import absent_query, add_validation_arguments, load_validation, validation_examples  # noqa: E402
from val_two_pass import logits_of  # noqa: E402


def main() -> None:
    from omnisep.evaluation.metrics import score_estimate
    from omnisep.evaluation.reports import describe_sample
    from omnisep.evaluation.usage import SCORED_LENGTH, draw_absent_label
    from omnisep.models import signal_path as path
    from omnisep.queries import background_query, normalize
    from omnisep.scan import verification_for
    from omnisep.states import contrast_strength, load_checkpoint, second_look_gate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_validation_arguments(parser)
    parser.add_argument("--model", default="src/omnisep/pretrained/v3")
    parser.add_argument("--taus", default="0.02,0.05,0.1,0.2", help="tagger probabilities under which the gate opens")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test_set, table, dataset, _, _ = load_validation(args)
    loaded = load_checkpoint(args.model)
    net, bank = loaded.model.eval(), loaded.bank
    strength = contrast_strength(loaded.config, args.model)
    gate_db = second_look_gate(loaded.config, args.model) or -18.0
    tagging = verification_for(loaded, args.model)
    rows = normalize(torch.as_tensor(bank.embeddings, dtype=torch.float32))
    background = background_query(bank.embeddings)
    taus = [float(t) for t in args.taus.split(",")]
    ways = ["one pass", f"energy gate {gate_db:g} dB", *[f"energy gate or tagger < {t:g}" for t in taus]]
    sdri: dict[str, list[float]] = {way: [] for way in ways}
    absent: dict[str, list[float]] = {way: [] for way in ways}
    opened_present = {way: 0 for way in ways}
    count = 0
    with torch.no_grad():
        for n, target, interferer, mixture, reference in validation_examples(test_set, dataset, args):
            if reference is None:
                continue
            count += 1
            target_item = test_set.mixtures[n][0]
            own = bank.labels.index(test_set.items[target_item].label)
            present = {test_set.items[i].label for i in test_set.mixtures[n]}
            missing = bank.labels.index(draw_absent_label(bank.labels, present, 0, n))
            assert torch.allclose(rows[missing], absent_query(n, test_set, bank))
            queries = torch.stack([rows[own], rows[missing], background])
            spec = path.analyse(mixture[None])
            logits = logits_of(net, spec, queries)
            first = [(1 + strength) * logits[i] - strength * logits[2] for i in (0, 1)]
            masks1 = torch.sigmoid(torch.stack(first))
            estimates1 = path.synthesise(path.apply_masks(spec, masks1[None]), mixture.shape[-1])[0]
            whole = float(torch.sum(mixture.double() ** 2))
            share = [10 * np.log10(max(float(torch.sum(e.double() ** 2)), 1e-12) / whole) for e in estimates1]
            tags = tagging.tag(mixture.numpy())
            probability = [float(tags[own]), float(tags[missing])]
            product = []
            for i in (0, 1):
                again = path.analyse(estimates1[i][None])[..., : spec.shape[-1]]
                second = logits_of(net, again, queries)
                mask2 = torch.sigmoid((1 + strength) * second[i] - strength * second[2])
                product.append(path.synthesise(path.apply_masks(spec, (masks1[i] * mask2)[None, None]), mixture.shape[-1])[0, 0])
            for way in ways:
                if way == "one pass":
                    opens = [False, False]
                elif way.startswith("energy gate or"):
                    tau = float(way.rsplit("< ", 1)[1])
                    opens = [share[i] < gate_db or probability[i] < tau for i in (0, 1)]
                else:
                    opens = [share[i] < gate_db for i in (0, 1)]
                outputs = [product[i] if opens[i] else estimates1[i] for i in (0, 1)]
                opened_present[way] += opens[0]
                score = score_estimate(target.numpy(), interferer.numpy(), mixture.numpy(), outputs[0].numpy(), reference,
                                       "fast", SCORED_LENGTH)
                if score is not None:
                    sdri[way].append(score.sdr - score.sdr_mix)
                out = float(np.sum(outputs[1].numpy()[:SCORED_LENGTH] ** 2))
                energy = float(np.sum(mixture.numpy()[:SCORED_LENGTH] ** 2))
                absent[way].append(10 * np.log10(max(out, 1e-12) / max(energy, 1e-12)))
    print(f"{describe_sample(count, args.every, whole_list=True)} mixtures ({args.mixtures}), model {args.model}; text "
          "queries with the model's contrast; SDRi paired against the shipped energy gate (± SEM)\n")
    print("| way | text SDRi | - energy gate | present queries looked at again | absent energy, mean (median) |")
    print("|---|---|---|---|---|")
    base = np.array(sdri[ways[1]])
    for way in ways:
        values = np.array(sdri[way])
        difference = values - base
        print(f"| {way} | {values.mean():.2f} | {difference.mean():+.2f} ± {difference.std(ddof=1) / np.sqrt(difference.size):.2f} "
              f"| {opened_present[way]} of {count} | {np.mean(absent[way]):.1f} ({np.median(absent[way]):.1f}) dB |")


if __name__ == "__main__":
    main()
