"""Does a sharper or lower mask buy silence for an absent sound? Measured on the VALIDATION mixtures.

Every mask of the default v2 becomes ``sigmoid(s * L - b)`` (``L``: the logits the API uses, with the
query contrast, or with a negative query of the interferer's label at the model's alpha 2), for a grid
of temperatures ``s`` and biases ``b``; one U-Net pass per mixture serves them all. Prints the SDRi of
text, picture and description queries and of the negative query, and the energy returned for a label
that is not in the mixture (dB re mixture, as the usage report). The test split is never read.

    python scripts/val_mask_shaping.py --limit 200 --temperatures 1,1.5,2 --biases 0,0.5,1

(the table in docs/results/v2-words/val-mask-shaping.md).

Needs the corpus and its embedding cache (runs/cache-full).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    from omnisep.evaluation.metrics import score_estimate
    from omnisep.evaluation.reports import describe_sample
    from omnisep.evaluation.usage import SCORED_LENGTH, energy_db
    from omnisep.models import signal_path as path
    from omnisep.queries import background_query
    from omnisep.states import contrast_strength, load_checkpoint
    from val_inference_modes import (absent_query, add_validation_arguments, load_validation, mixture_queries,
                                     validation_examples, validation_indices)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="src/omnisep/pretrained/v2")
    add_validation_arguments(parser)
    parser.add_argument("--temperatures", default="1,1.5,2,3")
    parser.add_argument("--biases", default="0,0.5,1,2")
    parser.add_argument("--alpha", type=float, default=2.0, help="strength of the interferer's negative query")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    shapes = [(float(s), float(b)) for s in args.temperatures.split(",") for b in args.biases.split(",")]

    test_set, table, dataset, described, descriptions = load_validation(args)
    checkpoint = load_checkpoint(args.model)
    net, bank = checkpoint.model.eval(), checkpoint.bank
    strength = contrast_strength(checkpoint.config, args.model)
    background = background_query(bank.embeddings)
    forms = ("text", "image", "description", "text - negative")
    scores: dict[tuple, list[float]] = {}
    absent: dict[tuple, list[float]] = {}
    count = len(validation_indices(test_set, args, args.limit))
    with torch.no_grad():
        for n, target, interferer, mixture, reference in validation_examples(test_set, dataset, args, args.limit):
            if reference is None:
                continue
            queries = {**mixture_queries(n, test_set, table, described, descriptions), "background": background}
            queries["absent"] = absent_query(n, test_set, bank)
            spec = path.analyse(mixture[None])
            frames = spec.shape[-1]
            prepared = net.prepare(path.pad_frames(path.network_input(spec), net.time_multiple))
            logits = dict(zip(queries, net.mask_logits(prepared, torch.stack(list(queries.values()))[None])[..., :frames][0]))
            asked = {k: (1 + strength) * logits[k] - strength * logits["background"]
                     for k in ("text", "image", "description", "absent") if k in logits}
            asked["text - negative"] = (1 + args.alpha) * logits["text"] - args.alpha * logits["negative"]
            keys = [(k, s, b) for k in asked for s, b in shapes]
            masks = torch.stack([torch.sigmoid(s * asked[k] - b) for k, s, b in keys])
            estimates = path.synthesise(path.apply_masks(spec, masks[None]), mixture.shape[-1])[0]
            for (k, s, b), estimate in zip(keys, estimates):
                if k == "absent":
                    absent.setdefault((s, b), []).append(
                        energy_db(estimate.numpy()[:SCORED_LENGTH], mixture.numpy()[:SCORED_LENGTH]))
                    continue
                score = score_estimate(target.numpy(), interferer.numpy(), mixture.numpy(), estimate.numpy(), reference,
                                       "fast", SCORED_LENGTH)
                if score is not None:
                    scores.setdefault((k, s, b), []).append(score.sdr - score.sdr_mix)
    print(f"{describe_sample(count, args.every, whole_list=args.limit is None)} validation mixtures ({args.mixtures}), model {args.model}, query contrast {strength:g}; "
          "mean SDRi in dB; absent: energy returned for a label not in the mixture, dB re mixture\n")
    print("| temperature s | bias b | " + " | ".join(forms) + " | absent (mean) | absent (median) |")
    print("|---|---|" + "---|" * (len(forms) + 2))
    for s, b in shapes:
        cells = [f"{np.mean(scores[(k, s, b)]):.2f}" for k in forms]
        print(f"| {s:g} | {b:g} | " + " | ".join(cells) + f" | {np.mean(absent[(s, b)]):.2f} | {np.median(absent[(s, b)]):.2f} |")


if __name__ == "__main__":
    main()
