"""A second pass over what the first one separated, measured on VALIDATION mixtures (issue 15 probe).

The default model turns the other sound down rather than removing it. A
second pass hands the network its own first estimate, where the target
dominates, and asks the same query again. Two ways to combine, each scored
against one pass:

* ``again``: the second pass's mask applied to the first estimate's
  spectrogram (separate what was separated);
* ``product``: the two passes' masks multiplied, applied to the mixture's
  spectrogram (one synthesis, no phase drift between the passes);
* ``gated at G dB``: the product only where the first pass returned less
  than G dB of the mixture's energy (a query that finds little of its sound
  is asked again), the first pass elsewhere.

Queries as users get them (the model's query contrast; text also with the
interferer's text as a logit-mode negative at the model's alpha), and a
query for a label that is absent, scored by the energy it returns (dB
relative to the mixture). SDRi is the protocol's (first 65,280 samples,
fast backend). It costs twice the compute of one pass (gated: only where the gate opens).

    python scripts/val_two_pass.py --model src/omnisep/pretrained/v3 --every 4
    python scripts/val_two_pass.py --model src/omnisep/pretrained/v3 --every 4 \\
        --mixtures corpus/mixtures_shift.jsonl --manifest corpus/manifest-shift.jsonl --cache runs/cache-shift
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from val_inference_modes import (  # noqa: E402
    absent_query,
    add_validation_arguments,
    load_validation,
    mixture_queries,
    validation_examples,
)


def logits_of(net, spec, queries):
    """Mask logits ``[Q, F, T]`` of the spectrogram ``spec`` for ``queries`` ``[Q, D]``."""
    from omnisep.models import signal_path as path

    x = path.network_input(spec)
    frames = x.shape[-1]
    prepared = net.prepare(path.pad_frames(x, net.time_multiple))
    return net.mask_logits(prepared, queries[None])[0, ..., :frames]


def main() -> None:
    from omnisep.evaluation.metrics import score_estimate
    from omnisep.evaluation.reports import describe_sample
    from omnisep.evaluation.usage import SCORED_LENGTH
    from omnisep.models import signal_path as path
    from omnisep.queries import background_query
    from omnisep.states import contrast_strength, load_checkpoint, negative_defaults

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_validation_arguments(parser)
    parser.add_argument("--model", default="src/omnisep/pretrained/v3")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gates", default="-6,-10,-14",
                        help="also a gated second pass: the product only where the first pass returned less than this "
                             "share of the mixture's energy (dB); elsewhere the first pass as it is")
    parser.add_argument("--contrasts", default="1,2",
                        help="one pass with these query-contrast strengths too (what a user can ask for instead)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test_set, table, dataset, described, descriptions = load_validation(args)
    checkpoint = load_checkpoint(args.model)
    net, bank = checkpoint.model.eval(), checkpoint.bank
    strength = contrast_strength(checkpoint.config, args.model)
    alpha = negative_defaults(checkpoint.config, args.model)["alpha"]
    background = background_query(bank.embeddings)

    def combine(logits: dict, strength: float = strength) -> dict:
        """The mask logits users get: contrast on plain queries, the logit-mode negative on text."""
        masks = {k: (1 + strength) * logits[k] - strength * logits["background"]
                 for k in ("text", "image", "audio", "description", "absent") if k in logits}
        masks["text - negative"] = (1 + alpha) * logits["text"] - alpha * logits["negative"]
        return masks

    scores: dict[tuple[str, str], list[float]] = {}
    returned: dict[str, list[float]] = {}
    count = 0
    with torch.no_grad():
        for n, target, interferer, mixture, reference in validation_examples(test_set, dataset, args):
            if reference is None:
                continue
            count += 1
            asked = {**mixture_queries(n, test_set, table, described, descriptions),
                     "absent": absent_query(n, test_set, bank), "background": background}
            names, queries = list(asked), torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in asked.values()])
            spec = path.analyse(mixture[None])
            logits = dict(zip(names, logits_of(net, spec, queries)))
            first = combine(logits)
            keys = list(first)
            masks1 = torch.sigmoid(torch.stack([first[k] for k in keys]))
            estimates1 = path.synthesise(path.apply_masks(spec, masks1[None]), mixture.shape[-1])[0]
            outputs = {"one pass": estimates1}
            for other in (float(c) for c in args.contrasts.split(",") if c):
                shaped = combine(logits, other)
                outputs[f"one pass, contrast {other:g}"] = path.synthesise(
                    path.apply_masks(spec, torch.sigmoid(torch.stack([shaped[k] for k in keys]))[None]), mixture.shape[-1])[0]
            again, product = [], []
            for index, key in enumerate(keys):
                spec2 = path.analyse(estimates1[index][None])
                second = combine(dict(zip(names, logits_of(net, spec2, queries))))
                mask2 = torch.sigmoid(second[key])
                again.append(path.synthesise(path.apply_masks(spec2, mask2[None, None]), mixture.shape[-1])[0, 0])
                product.append(path.synthesise(path.apply_masks(spec, (masks1[index] * mask2)[None, None]),
                                               mixture.shape[-1])[0, 0])
            outputs["again"], outputs["product"] = torch.stack(again), torch.stack(product)
            whole = float(torch.sum(mixture.double() ** 2))
            share = [10 * np.log10(max(float(torch.sum(e.double() ** 2)), 1e-12) / max(whole, 1e-12)) for e in estimates1]
            for gate in (float(g) for g in args.gates.split(",") if g):
                outputs[f"gated at {gate:g} dB"] = torch.stack(
                    [product[i] if share[i] < gate else estimates1[i] for i in range(len(keys))])
            energy = float(np.sum(mixture.numpy()[:SCORED_LENGTH] ** 2))
            for way, estimates in outputs.items():
                for key, estimate in zip(keys, estimates):
                    if key == "absent":
                        out = float(np.sum(estimate.numpy()[:SCORED_LENGTH] ** 2))
                        returned.setdefault(way, []).append(10 * np.log10(max(out, 1e-12) / max(energy, 1e-12)))
                        continue
                    score = score_estimate(target.numpy(), interferer.numpy(), mixture.numpy(), estimate.numpy(),
                                           reference, "fast", SCORED_LENGTH)
                    if score is not None:
                        scores.setdefault((key, way), []).append(score.sdr - score.sdr_mix)
    print(f"{describe_sample(count, args.every, whole_list=True)} mixtures ({args.mixtures}), model {args.model}; "
          "mean SDRi in dB (count), and the paired difference against one pass (± SEM)\n")
    print("| query | way | SDRi | - one pass |\n|---|---|---|---|")
    for (key, way), values in sorted(scores.items()):
        difference = np.subtract(values, scores[(key, "one pass")])
        print(f"| {key} | {way} | {np.mean(values):.2f} ({len(values)}) | "
              f"{difference.mean():+.2f} ± {difference.std(ddof=1) / np.sqrt(difference.size):.2f} |")
    print("\n| absent label | way | energy returned, mean (median) |\n|---|---|---|")
    for way, values in returned.items():
        print(f"| absent | {way} | {np.mean(values):.1f} ({np.median(values):.1f}) dB |")


if __name__ == "__main__":
    main()
