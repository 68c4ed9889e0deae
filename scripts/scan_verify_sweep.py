"""How many labels the verified scan should listen to, and how hard to weigh what it hears.

``collect`` separates every bank label from each validation mixture (as the
scan does), keeps each label's plain presence, and embeds the separated audio
of the TOP most present labels with the model's query encoder. ``analyze``
then scores, without rerunning anything, presence x cos^power for each number
of labels <= TOP and each power: is the top-ranked label present, and how
often a present label outranks an absent one. The values that v2 records
(``inference.scan.verify``: 12 labels, power 2) were chosen this way on the
first 200 validation mixtures (targets from the first 18 of 40 classes: the list is ordered by class), and
checked on every other one (``--every 2``, all classes); the threshold then comes from
``omnisep evaluate-presence``.

    python scripts/scan_verify_sweep.py collect src/omnisep/pretrained/v2 corpus/mixtures_val.jsonl runs/verify-val.npz --limit 200
    python scripts/scan_verify_sweep.py collect src/omnisep/pretrained/v2 corpus/mixtures_val.jsonl runs/verify-val2.npz --every 2 --limit 1000 --top 16
    python scripts/scan_verify_sweep.py analyze runs/verify-val.npz
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def collect(model: str, mixtures: str, out: str, limit: int, top: int, every: int = 1, manifest: str | None = None) -> None:
    from tqdm import tqdm

    from omnisep.api import Separator
    from omnisep.apply import separate_tensor
    from omnisep.data.mixtures import load_test_set
    from omnisep.data.mixing import protocol_mixture
    from omnisep.queries import normalize
    from omnisep.scan import scan_estimates
    from omnisep.spectral import SAMPLE_RATE

    separator = Separator(model)
    labels = list(separator.bank.labels)
    rows = normalize(torch.as_tensor(separator.bank.embeddings, dtype=torch.float32))
    test_set = load_test_set(mixtures, manifest)
    presence, chosen, heard, truth = [], [], [], []
    # The list is ordered by target class: a stride (--every) samples every class, the first N only the first few.
    for index in tqdm(list(range(0, len(test_set.mixtures), every))[:limit], unit="mixture"):
        row = test_set.mixtures[index]
        _, mixture = protocol_mixture(test_set, row)
        with torch.inference_mode():
            estimates = separate_tensor(separator.model, mixture, rows).numpy()
        plain = scan_estimates(labels, estimates, mixture).presence
        order = np.argsort(-plain, kind="stable")[:top]
        with torch.inference_mode():
            embedded = separator.encoder.embed("audio", [estimates[j] for j in order], sample_rate=SAMPLE_RATE)
        present = np.zeros(len(labels), bool)
        present[[labels.index(test_set.items[i].label) for i in row if test_set.items[i].label in labels]] = True
        presence.append(plain), chosen.append(order), heard.append(embedded.numpy()), truth.append(present)
    np.savez(out, presence=np.stack(presence), top=np.stack(chosen), heard=np.stack(heard), truth=np.stack(truth),
             rows=rows.numpy(), labels=np.array(labels))


def analyze(path: str) -> None:
    from omnisep.evaluation.usage import _auc

    data = np.load(path)
    presence, order, truth = data["presence"], data["top"], data["truth"]
    heard = data["heard"] / np.linalg.norm(data["heard"], axis=-1, keepdims=True)
    own = np.einsum("nkd,nkd->nk", heard, data["rows"][order])  # cosine of each heard clip with its label
    listened = np.take_along_axis(presence, order, 1)
    print(f"{len(presence)} mixtures; a present label is among the {order.shape[1]} most energetic in "
          f"{np.take_along_axis(truth, order, 1).sum() / truth.sum():.1%} of cases\n")
    print("| labels listened to | power | top label present | AUC within a mixture |")
    print("|---:|---:|---:|---:|")

    def show(name, power, score):
        top = truth[np.arange(len(score)), score.argmax(1)].mean()
        auc = np.nanmean([_auc(s, list(np.flatnonzero(t))) for s, t in zip(score, truth)])
        print(f"| {name} | {power} | {top:.3f} | {auc:.3f} |")

    show("none (plain scan)", "-", presence)
    for count in sorted({4, 8, 12, order.shape[1]} & set(range(1, order.shape[1] + 1))):
        for power in (1, 2, 3):
            score = presence * 1e-4  # unheard labels: below every heard one, in the order of their energy
            weights = np.clip(own[:, :count], 0, 1) ** power
            np.put_along_axis(score, order[:, :count], listened[:, :count] * weights, 1)
            show(str(count), power, score)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("collect")
    c.add_argument("model"), c.add_argument("mixtures"), c.add_argument("out")
    c.add_argument("--limit", type=int, default=200)
    c.add_argument("--top", type=int, default=12)
    c.add_argument("--every", type=int, default=1, help="only every N-th mixture (then --limit of those)")
    c.add_argument("--manifest", default=None, help="the items' manifest (default: manifest.jsonl beside the list)")
    a = commands.add_parser("analyze")
    a.add_argument("path")
    args = parser.parse_args()
    if args.command == "collect":
        collect(args.model, args.mixtures, args.out, args.limit, args.top, args.every, args.manifest)
    else:
        analyze(args.path)


if __name__ == "__main__":
    main()
