"""Probe: does a small text adapter on MiniLM help Query-Aug name the class of a casual description?

A residual low-rank map ``q -> normalize(q + q A B)`` is fitted on the shipped Query-Aug bank only (each
synonym, WordNet entry, gloss and description scored against the rest of the bank, leave one out, plus
templated phrasings such as "I can hear {synonym}"), then applied to queries and bank alike. It prints the
description -> label top-1 on the validation files (``descriptions-val.json``, ``descriptions-val-casual.json``)
before and after, over a small grid; the held-out test descriptions are never read.

    OMP_NUM_THREADS=1 python scripts/text_adapter_probe.py

Result (2026-12-06, eighth session; docs/encoders.md): casual validation 0.817 without, 0.700-0.833 with,
at most two of 120 queries gained, so no adapter is shipped.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from omnisep.encoders import get_encoder
from omnisep.query_aug import ClassMatcher
from omnisep.querynet.words import CONFIGS, read_queries

TEMPLATES = ["the sound of {x}", "I can hear {x}", "{x} noises", "some {x} in the background", "a recording of {x}",
             "listen to that {x}", "is that {x}?", "{x} sounds", "there is {x} nearby", "loud {x}", "quiet {x} far away",
             "my {x}", "a lot of {x}", "that {x} again"]
LEAVE_ONE_OUT_KINDS = ("description", "wordnet-gloss", "synonym", "wordnet-word")


def class_scores(bank: ClassMatcher, queries, entries, exclude=None):
    """Query-Aug's own class scores (soft maximum over each class's entries) with the bank's entries replaced."""
    entry_labels = [bank.labels[c] for c in bank.entry_class.tolist()]
    matcher = ClassMatcher(bank.labels, entry_labels, entries, entry_temperature=bank.entry_temperature)
    return matcher.class_scores(queries, exclude)[0]


def main() -> None:
    torch.manual_seed(0)
    encoder = get_encoder("bundled")
    bank = ClassMatcher.load()
    entries = bank.embeddings.float()

    def embed(texts):
        return F.normalize(encoder.embed_text(texts).float(), dim=-1)

    templated, templated_class = [], []
    for index, (kind, text) in enumerate(zip(bank.kinds, bank.texts)):
        if kind in ("label", "synonym", "wordnet-word"):
            templated += [template.format(x=text) for template in TEMPLATES]
            templated_class += [int(bank.entry_class[index])] * len(TEMPLATES)
    templated = (embed(templated), torch.tensor(templated_class))

    def validation(name):
        texts, labels = read_queries(CONFIGS / "querynet" / name)
        known = [i for i, label in enumerate(labels) if label is not None]
        return embed([texts[i] for i in known]), torch.tensor([bank.labels.index(labels[i]) for i in known])

    files = {"val": validation("descriptions-val.json"), "casual": validation("descriptions-val-casual.json")}

    def top1(adapt, data):
        queries, truth = data
        return float((class_scores(bank, adapt(queries), adapt(entries)).argmax(1) == truth).float().mean())

    print("no adapter: " + ", ".join(f"{name} {top1(lambda x: x, data):.3f}" for name, data in files.items()))
    left_out = torch.tensor([i for i, kind in enumerate(bank.kinds) if kind in LEAVE_ONE_OUT_KINDS])
    exclude = torch.zeros(len(left_out), len(entries), dtype=torch.bool)
    exclude[torch.arange(len(left_out)), left_out] = True
    for rank, decay, steps, use_templates in itertools.product([16, 64], [0.0, 0.01, 0.1], [100, 300], [True, False]):
        down = torch.zeros(entries.shape[1], rank, requires_grad=True)
        up = (torch.randn(rank, entries.shape[1]) * 0.01).requires_grad_(True)
        optimizer = torch.optim.Adam([down, up], lr=1e-2)

        def adapt(x):
            return F.normalize(x + x @ down @ up, dim=-1)

        for _ in range(steps):
            adapted = adapt(entries)
            loss = F.cross_entropy(class_scores(bank, adapted[left_out], adapted, exclude) / 0.03, bank.entry_class[left_out])
            if use_templates:
                loss = loss + F.cross_entropy(class_scores(bank, adapt(templated[0]), adapted) / 0.03, templated[1])
            loss = loss + decay * ((down @ up) ** 2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            scores = ", ".join(f"{name} {top1(adapt, data):.3f}" for name, data in files.items())
        print(f"rank {rank}, decay {decay}, {steps} steps, templates {use_templates}: {scores}", flush=True)


if __name__ == "__main__":
    main()
