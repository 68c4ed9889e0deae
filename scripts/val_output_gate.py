"""Would listening to the output buy silence for an absent sound? Measured on the VALIDATION mixtures.

A query for a sound that is not in the recording returns a quiet copy of what is there. The query
encoder can hear that: it embeds what the query returned, and the cosine with the query is lower for
an absent sound (AUC about 0.85 against present ones). This script measures a gate built on that:
the output's gain is ``floor`` below cosine ``low``, 1 above ``high``, linear in between. For every
validation mixture, the model's answer (with its query contrast) to the target's text, picture, audio
example and description queries and to an absent label's text is embedded once; the SDRi of each
present query is scored at a few fixed gains and read off (linearly in log gain) for each gate, and
the absent query's energy moves by the gain in dB. Prints, per gate, the change in mean SDRi for each
query form and the absent query's energy (dB re mixture, mean and median). The test split is never read.

    python scripts/val_output_gate.py --every 2 --out runs/gate/val2.json

(the table in docs/results/v2-words/val-output-gate.md). ``--from-json`` re-reads a collection.
Needs the corpus and its embedding cache (runs/cache-full).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

GAINS = (1.0, 0.5, 0.25, 0.1, 0.03)
FORMS = ("text", "image", "audio", "description")
LOWS = (-0.1, -0.05, 0.0, 0.05)
HIGHS = (0.05, 0.1, 0.15, 0.2)
FLOORS = (0.3, 0.1, 0.03)


def collect(args) -> dict:
    from omnisep.encoders import get_encoder
    from omnisep.evaluation.metrics import score_estimate
    from omnisep.evaluation.usage import SCORED_LENGTH, energy_db
    from omnisep.models import signal_path as path
    from omnisep.queries import background_query, normalize
    from omnisep.spectral import SAMPLE_RATE
    from omnisep.states import contrast_strength, load_checkpoint
    from val_inference_modes import absent_query, load_validation, mixture_queries, validation_examples

    test_set, table, dataset, described, descriptions = load_validation(args)
    checkpoint = load_checkpoint(args.model)
    net, bank = checkpoint.model.eval(), checkpoint.bank
    encoder = get_encoder(checkpoint.config["encoder"]["name"], **(checkpoint.config["encoder"].get("options") or {}))
    strength = contrast_strength(checkpoint.config, args.model)
    background = background_query(bank.embeddings)
    records = []
    with torch.no_grad():
        for n, target, interferer, mixture, reference in validation_examples(test_set, dataset, args, args.limit):
            target, interferer = target.numpy(), interferer.numpy()
            queries = mixture_queries(n, test_set, table, described, descriptions)
            del queries["negative"]
            queries["absent"] = absent_query(n, test_set, bank)
            names = list(queries)
            spec = path.analyse(mixture[None])
            frames = spec.shape[-1]
            prepared = net.prepare(path.pad_frames(path.network_input(spec), net.time_multiple))
            logits = net.mask_logits(prepared, torch.stack([queries[k] for k in names] + [background])[None])[..., :frames][0]
            masks = torch.sigmoid((1 + strength) * logits[:-1] - strength * logits[-1])
            estimates = path.synthesise(path.apply_masks(spec, masks[None]), mixture.shape[-1])[0].numpy()
            heard = encoder.embed("audio", list(estimates), sample_rate=SAMPLE_RATE).float()
            for name, estimate, embedding in zip(names, estimates, heard):
                record = {"mixture": n, "form": name, "cosine": float(embedding @ normalize(queries[name]).float()),
                          "energy_db": energy_db(estimate[:SCORED_LENGTH], mixture.numpy()[:SCORED_LENGTH])}
                if name != "absent":
                    if reference is None:
                        continue
                    scores = [score_estimate(target, interferer, mixture.numpy(), gain * estimate, reference, "fast",
                                             SCORED_LENGTH) for gain in GAINS]
                    if any(score is None for score in scores):
                        continue
                    record["sdri"] = [score.sdr - score.sdr_mix for score in scores]
                records.append(record)
    return {"model": args.model, "gains": list(GAINS), "records": records}


def analyse(data: dict) -> str:
    log_gains = np.log(np.array(data["gains"]))[::-1]
    records = data["records"]
    present = {form: [r for r in records if r["form"] == form] for form in FORMS}
    absent = [r for r in records if r["form"] == "absent"]

    def sdri(record, gain):
        return float(np.interp(np.log(gain), log_gains, np.array(record["sdri"])[::-1]))

    plain = {form: np.mean([r["sdri"][0] for r in rows]) for form, rows in present.items() if rows}
    energies = [r["energy_db"] for r in absent]
    lines = [f"{len(absent)} validation mixtures, model {data['model']} (with its query contrast). Mean SDRi without "
             "a gate: " + ", ".join(f"{form} {value:.2f} dB ({len(present[form])})" for form, value in plain.items())
             + f"; absent label: {np.mean(energies):.2f} dB re mixture (median {np.median(energies):.2f}).", "",
             "| low | high | floor (dB) | " + " | ".join(f"{form} SDRi change" for form in plain)
             + " | absent, mean (dB) | absent, median (dB) |",
             "|---:|---:|---:|" + "---:|" * (len(plain) + 2)]
    rows = []
    for low in LOWS:
        for high in (h for h in HIGHS if h > low):
            for floor in FLOORS:
                def gain(cosine):
                    return floor + (1 - floor) * np.clip((cosine - low) / (high - low), 0.0, 1.0)

                change = [np.mean([sdri(r, gain(r["cosine"])) for r in present[form]]) - plain[form] for form in plain]
                gated = [r["energy_db"] + 20 * np.log10(gain(r["cosine"])) for r in absent]
                rows.append((min(change), low, high, floor, change, np.mean(gated), np.median(gated)))
    rows.sort(key=lambda row: -row[0])  # the gates that cost the worst-hit query form least first
    for _, low, high, floor, change, mean, median in rows:
        lines.append(f"| {low:g} | {high:g} | {20 * np.log10(floor):.1f} | " + " | ".join(f"{c:+.2f}" for c in change)
                     + f" | {mean:.2f} | {median:.2f} |")
    return "\n".join(lines)


def main() -> None:
    from val_inference_modes import add_validation_arguments

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="src/omnisep/pretrained/v2")
    add_validation_arguments(parser)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default=None, help="keep the collection (JSON) to re-read with --from-json")
    parser.add_argument("--from-json", default=None)
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json) as handle:
            data = json.load(handle)
    else:
        data = collect(args)
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(data, handle)
    print(analyse(data))


if __name__ == "__main__":
    main()
