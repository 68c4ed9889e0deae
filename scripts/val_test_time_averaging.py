"""Test-time averaging of mask logits, measured on the VALIDATION mixtures (tried for issue 15, not adopted).

Two ways to average a model's mask logits over several views of one input, each scored against one pass:

* ``s0,s1,...``: the network input shifted by ``s`` frames (silent frames in front, the logits shifted
  back), which moves where the U-Net's stride-2 grid falls;
* ``wWhH``: windows of ``W`` frames every ``H`` frames (Hann-weighted overlap-add of the logits), so the
  network sees inputs as long as its training crops (32,767 samples: 128 frames).

Queries as users get them: text, picture, audio example and one description with the model's query
contrast (0.5), and text with the interferer's text as a logit-mode negative (alpha 2). SDRi is the
protocol's (first 65,280 samples, fast backend); the last column is paired against one pass.

    python scripts/val_test_time_averaging.py --every 4   # the views of docs/results/v2-finetunes/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from val_inference_modes import add_validation_arguments, load_validation, mixture_queries, validation_examples  # noqa: E402


def shifted_logits(net, x, queries, shifts):
    """Mean logits over the input shifted by each of ``shifts`` frames."""
    from omnisep.models import signal_path as path
    from omnisep.spectral import MAG_EPS

    frames = x.shape[-1]
    outputs = []
    for s in shifts:
        shifted = F.pad(x, (s, 0), value=MAG_EPS) if s else x
        prepared = net.prepare(path.pad_frames(shifted, net.time_multiple))
        outputs.append(net.mask_logits(prepared, queries)[..., s:s + frames][0])
    return torch.stack(outputs).mean(0)


def windowed_logits(net, x, queries, width, hop):
    """Hann-weighted overlap-add of the logits of ``width``-frame windows every ``hop`` frames (the first and
    last windows keep full weight at the edges, so every frame is covered)."""
    frames = x.shape[-1]
    if frames <= width:
        return shifted_logits(net, x, queries, [0])
    starts = list(range(0, frames - width + 1, hop))
    if starts[-1] + width < frames:
        starts.append(frames - width)
    total, weight = None, torch.zeros(frames)
    for a in starts:
        logits = shifted_logits(net, x[..., a:a + width], queries, [0])
        w = torch.hann_window(width + 2, periodic=False)[1:-1].clone()
        if a == starts[0]:
            w[: width // 2] = 1
        if a == starts[-1]:
            w[width // 2:] = 1
        total = torch.zeros(*logits.shape[:-1], frames) if total is None else total
        total[..., a:a + width] += logits * w
        weight[a:a + width] += w
    return total / weight


def main() -> None:
    from omnisep.evaluation.metrics import score_estimate
    from omnisep.evaluation.reports import describe_sample
    from omnisep.evaluation.usage import SCORED_LENGTH
    from omnisep.models import signal_path as path
    from omnisep.queries import background_query
    from omnisep.states import load_checkpoint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_validation_arguments(parser)
    parser.add_argument("--model", default="src/omnisep/pretrained/v2")
    parser.add_argument("--views", default="0;0,64;0,32,64,96;w128h64;w128h32",
                        help="views separated by ';'; the first is the baseline of the paired column")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test_set, table, dataset, described, descriptions = load_validation(args)
    checkpoint = load_checkpoint(args.model)
    net, bank = checkpoint.model.eval(), checkpoint.bank
    views = args.views.split(";")
    scores: dict[tuple[str, str], list[float]] = {}
    count = 0
    with torch.no_grad():
        for n, target, interferer, mixture, reference in validation_examples(test_set, dataset, args):
            if reference is None:
                continue
            count += 1
            asked = {**mixture_queries(n, test_set, table, described, descriptions),
                     "background": background_query(bank.embeddings)}
            names, queries = list(asked), torch.stack(list(asked.values()))[None]
            spec = path.analyse(mixture[None])
            x = path.network_input(spec)
            for view in views:
                if view.startswith("w"):
                    width, hop = (int(v) for v in view[1:].split("h"))
                    logits = windowed_logits(net, x, queries, width, hop)
                else:
                    logits = shifted_logits(net, x, queries, [int(s) for s in view.split(",")])
                logits = dict(zip(names, logits))
                masks = {k: 1.5 * logits[k] - 0.5 * logits["background"]
                         for k in ("text", "image", "audio", "description") if k in logits}
                masks["text - negative"] = 3 * logits["text"] - 2 * logits["negative"]
                keys = list(masks)
                estimates = path.synthesise(path.apply_masks(spec, torch.sigmoid(torch.stack([masks[k] for k in keys]))[None]),
                                            mixture.shape[-1])[0]
                for key, estimate in zip(keys, estimates):
                    score = score_estimate(target.numpy(), interferer.numpy(), mixture.numpy(), estimate.numpy(), reference,
                                           "fast", SCORED_LENGTH)
                    if score is not None:
                        scores.setdefault((key, view), []).append(score.sdr - score.sdr_mix)
    print(f"{describe_sample(count, args.every, whole_list=True)} validation mixtures ({args.mixtures}), model {args.model}; "
          "mean SDRi in dB (count), and the paired difference against one pass (± SEM)\n")
    print("| query | views | SDRi | - one pass |\n|---|---|---|---|")
    for (key, view), values in sorted(scores.items()):
        difference = np.subtract(values, scores[(key, views[0])])
        print(f"| {key} | {view} | {np.mean(values):.2f} ({len(values)}) | "
              f"{difference.mean():+.2f} ± {difference.std(ddof=1) / np.sqrt(difference.size):.2f} |")


if __name__ == "__main__":
    main()
