"""Choose a model's inference defaults on the VALIDATION mixtures: negative mode/alpha and query contrast.

For every validation mixture (target T, interferer I) and every model given, one U-Net pass serves:
text, image and description queries as they are (descriptions: configs/querynet/descriptions-val.json,
written for validation, never trained on); the query contrast (1+b) L(q) - b L(background) for each b;
the logit-mode negative (1+a) L(q) - a L(I's text) for each a; and both together. SDRi is the protocol's
(BSSEval v4, first 65,280 samples, fast backend). A second table gives the energy each model returns
for a label that is not in the mixture (dB re mixture, as the usage report measures it; the absent label
drawn as there), plain and with each contrast. Prints the tables; the test split is never read.

    python scripts/val_inference_modes.py src/omnisep/pretrained/v2 runs/v2-words/best \
        --alphas 1,2,3 --contrasts 0.25,0.5,1 > docs/results/v2-words/val-inference-modes.txt

Needs the corpus and its full embedding cache (runs/cache-full, `omnisep embed corpus/manifest.jsonl`).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def add_validation_arguments(parser: argparse.ArgumentParser) -> None:
    """The validation data every inference-setting script reads (also scripts/val_mask_shaping.py)."""
    parser.add_argument("--mixtures", default="corpus/mixtures_val.jsonl")
    parser.add_argument("--manifest", default="corpus/manifest.jsonl")
    parser.add_argument("--cache", default="runs/cache-full")
    parser.add_argument("--descriptions", default="configs/querynet/descriptions-val.json")
    parser.add_argument("--every", type=int, default=1,
                        help="only every N-th mixture (the list is ordered by target class: a stride keeps every class)")


def validation_indices(test_set, args, limit: int | None = None) -> list[int]:
    """The mixtures a script scores: every ``--every``-th, then the first ``limit`` of those."""
    return list(range(0, len(test_set.mixtures), max(1, args.every)))[:limit]


def validation_examples(test_set, dataset, args, limit: int | None = None):
    """``(n, target, interferer, mixture, reference)`` of each mixture :func:`validation_indices` names: tensors,
    and the unprocessed mixture's protocol score (None when the protocol cannot score it)."""
    from omnisep.evaluation.metrics import score_mixture
    from omnisep.evaluation.usage import SCORED_LENGTH

    for n in validation_indices(test_set, args, limit):
        example = dataset[n]
        target, interferer, mixture = example["sources"][0], example["sources"][1:].sum(0), example["mixture"]
        yield n, target, interferer, mixture, score_mixture(target.numpy(), interferer.numpy(), mixture.numpy(), "fast",
                                                             SCORED_LENGTH)


def load_validation(args):
    """(test set, query table, mixture dataset, {description: embedding}, {label: [descriptions]})."""
    from omnisep.data.mixing import MixtureDataset
    from omnisep.data.mixtures import load_test_set
    from omnisep.encoders import get_encoder
    from omnisep.evaluation.protocol.queries import load_query_table

    test_set = load_test_set(args.mixtures, args.manifest)
    table = load_query_table(test_set, {i for row in test_set.mixtures for i in row}, args.cache, None)
    dataset = MixtureDataset(test_set.items, table, training=False, num_sources=2, mixtures=test_set.mixtures)
    descriptions = json.loads(open(args.descriptions).read())
    texts = sorted({d for options in descriptions.values() for d in options})
    described = dict(zip(texts, get_encoder("bundled").embed_text(texts)))
    return test_set, table, dataset, described, descriptions


def mixture_queries(n, test_set, table, described, descriptions):
    """Validation mixture ``n``'s queries: its target's text (and picture, audio example and one description
    when there are), and the interferer's text (``negative``), each normalised."""
    from omnisep.queries import normalize

    target_item, interferer_item = test_set.mixtures[n]
    rows_t, available_t = table.get(test_set.items[target_item].id)
    rows_i, _ = table.get(test_set.items[interferer_item].id)
    options = descriptions.get(test_set.items[target_item].label)
    queries = {"text": normalize(rows_t[0]), "negative": normalize(rows_i[0])}
    if available_t[1]:
        queries["image"] = normalize(rows_t[1])
    if available_t[2]:
        queries["audio"] = normalize(rows_t[2])
    if options:
        queries["description"] = normalize(described[options[n % len(options)]])
    return queries


def absent_query(n, test_set, bank):
    """The normalised bank row of the label queried as absent in validation mixture ``n`` (drawn as the
    usage report draws it, among the labels not in the mixture)."""
    from omnisep.evaluation.usage import draw_absent_label
    from omnisep.queries import normalize

    present = {test_set.items[i].label for i in test_set.mixtures[n]}
    label = draw_absent_label(bank.labels, present, 0, n)
    return normalize(torch.as_tensor(bank.embeddings[bank.labels.index(label)], dtype=torch.float32))


def main() -> None:
    from omnisep.evaluation.metrics import score_estimate
    from omnisep.evaluation.reports import describe_sample
    from omnisep.evaluation.usage import SCORED_LENGTH, energy_db
    from omnisep.models import signal_path as path
    from omnisep.queries import background_query
    from omnisep.states import load_checkpoint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    add_validation_arguments(parser)
    parser.add_argument("--alphas", default="1,2,3")
    parser.add_argument("--contrasts", default="0.25,0.5,1")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    alphas = [float(a) for a in args.alphas.split(",")]
    contrasts = [float(b) for b in args.contrasts.split(",")]

    test_set, table, dataset, described, descriptions = load_validation(args)
    loaded = {name: load_checkpoint(name) for name in args.models}
    scores: dict[str, dict[str, list[float]]] = {name: {} for name in args.models}
    absent_db: dict[str, dict[str, list[float]]] = {name: {} for name in args.models}
    length = SCORED_LENGTH
    count = len(validation_indices(test_set, args))
    with torch.no_grad():
        for n, target, interferer, mixture, reference in validation_examples(test_set, dataset, args):
            if reference is None:
                continue
            queries = mixture_queries(n, test_set, table, described, descriptions)
            spec = path.analyse(mixture[None])
            frames = spec.shape[-1]
            for name, checkpoint in loaded.items():
                net = checkpoint.model.eval()
                bank = checkpoint.bank
                asked = {**queries, "absent": absent_query(n, test_set, bank), "background": background_query(bank.embeddings)}
                prepared = net.prepare(path.pad_frames(path.network_input(spec), net.time_multiple))
                logits = dict(zip(asked, net.mask_logits(prepared, torch.stack(list(asked.values()))[None])[..., :frames][0]))
                forms = [k for k in ("text", "image", "audio", "description") if k in logits]
                masks = {k: logits[k] for k in forms}
                for b in contrasts:
                    for k in forms:
                        masks[f"{k} + contrast {b:g}"] = (1 + b) * logits[k] - b * logits["background"]
                for a in alphas:
                    for k in ("text", "image"):
                        if k in logits:
                            masks[f"{k} - negative (logit, a={a:g})"] = (1 + a) * logits[k] - a * logits["negative"]
                    for b in contrasts:
                        masks[f"text - negative (logit, a={a:g}) + contrast {b:g}"] = (
                            (1 + a + b) * logits["text"] - a * logits["negative"] - b * logits["background"])
                masks["absent"] = logits["absent"]
                for b in contrasts:
                    masks[f"absent + contrast {b:g}"] = (1 + b) * logits["absent"] - b * logits["background"]
                keys = list(masks)
                estimates = path.synthesise(path.apply_masks(spec, torch.sigmoid(torch.stack([masks[k] for k in keys]))[None]),
                                            mixture.shape[-1])[0]
                for key, estimate in zip(keys, estimates):
                    if key.startswith("absent"):
                        absent_db[name].setdefault(key, []).append(
                            energy_db(estimate.numpy()[:SCORED_LENGTH], mixture.numpy()[:SCORED_LENGTH]))
                        continue
                    score = score_estimate(target.numpy(), interferer.numpy(), mixture.numpy(), estimate.numpy(), reference,
                                           "fast", length)
                    if score is not None:
                        scores[name].setdefault(key, []).append(score.sdr - score.sdr_mix)
    print(f"{describe_sample(count, args.every, whole_list=True)} validation mixtures ({args.mixtures}); "
          "mean SDRi in dB (count)\n")
    first, last = args.models[0], args.models[-1]
    paired = len(args.models) > 1
    print("| query | " + " | ".join(args.models) + (" | last - first (paired, ± SEM) |" if paired else " |"))
    print("|---|" + "---|" * (len(args.models) + paired))
    for key in scores[first]:
        cells = [f"{np.mean(scores[m][key]):.2f} ({len(scores[m][key])})" for m in args.models]
        if paired and len(scores[first][key]) == len(scores[last][key]):
            difference = np.subtract(scores[last][key], scores[first][key])
            cells.append(f"{difference.mean():+.2f} ± {difference.std(ddof=1) / np.sqrt(difference.size):.2f}")
        elif paired:
            cells.append("(not paired)")
        print(f"| {key} | " + " | ".join(cells) + " |")
    print("\nEnergy returned for an absent label, dB re mixture (mean, median; lower is better)\n")
    print("| query | " + " | ".join(args.models) + " |")
    print("|---|" + "---|" * len(args.models))
    for key in absent_db[args.models[0]]:
        print(f"| {key} | " + " | ".join(f"{np.mean(absent_db[m][key]):.2f}, {np.median(absent_db[m][key]):.2f}"
                                        for m in args.models) + " |")


if __name__ == "__main__":
    main()
