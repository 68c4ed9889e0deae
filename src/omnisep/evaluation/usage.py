"""What users notice, beside SDRi: silence for absent sounds, selectivity, per-class results, scan accuracy.

For every test mixture (target A, interferer B) and the model's text queries
(the Query-Aug bank: one embedding per training label):

* **absent-query energy**: the energy the model returns, relative to the
  mixture's, when asked for a class C that is in neither source (C drawn per
  mixture, seeded); the ideal is silence (minus infinity dB);
* **selectivity**: SDR of A from A's query minus SDR of A from B's query
  (both against A; a model that only turns the mixture down scores 0 dB);
* **per-class SDRi** of A from A's query;
* **scan accuracy**, what :func:`omnisep.scan.scan` finds with ``verify=False``
  (the plain scan; the verified one, which listens with the query encoder, is
  scored by :mod:`omnisep.evaluation.presence`): is the top-ranked label one of
  the two present ones, and the fraction of (present, absent) label pairs
  ranked the right way round (the area under the ROC curve).

All estimates go through :func:`omnisep.apply.separate_tensor`, what
``omnisep separate`` computes, in one pass per mixture for every label of the
bank: the three queries above are bank rows, and the scan's ranking comes
from the same estimates (:func:`omnisep.scan.scan_estimates`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from omnisep.errors import OmniSepError, describe
from omnisep.evaluation.metrics import SCORED_LENGTH, score_estimate, score_mixture, summarize

ENERGY_FLOOR_DB = -120.0


@dataclass
class UsageItem:
    index: int
    target_label: str
    interferer_label: str
    absent_label: str
    sdri: float | None
    selectivity: float | None
    absent_db: float
    top_present: bool
    auc: float


def energy_db(x: np.ndarray, reference: np.ndarray) -> float:
    """Energy of x relative to the reference in dB, floored (silence is finite and comparable)."""
    ratio = float(np.sum(np.square(x, dtype=np.float64)) / max(np.sum(np.square(reference, dtype=np.float64)), 1e-20))
    return max(ENERGY_FLOOR_DB, 10 * math.log10(ratio)) if ratio > 0 else ENERGY_FLOOR_DB


def draw_absent_label(labels: list[str], present: set[str], seed: int, index: int) -> str:
    """The label queried as absent for mixture ``index``: seeded by (seed, index), so reruns and scripts agree."""
    options = [label for label in labels if label not in present]
    return options[np.random.default_rng([seed, index]).integers(len(options))]


def _auc(presence: np.ndarray, present: list[int]) -> float:
    absent = [i for i in range(len(presence)) if i not in present]
    pairs = [(float(presence[p] > presence[a]) + 0.5 * float(presence[p] == presence[a])) for p in present for a in absent]
    return float(np.mean(pairs)) if pairs else float("nan")


def usage_items(loaded, test_set, limit: int | None = None, backend: str = "fast", seed: int = 0, progress=None,
                second_look: bool | float | None = True) -> list[UsageItem]:
    """Score the first ``limit`` mixtures of a test set (see the module docstring); ``second_look``: True, the
    model's own (when it records one), as users get it; a number of dB; False or None: none."""
    from omnisep.apply import separate_tensor
    from omnisep.data.mixing import MixtureDataset, QueryTable
    from omnisep.queries import normalize
    from omnisep.scan import scan_estimates

    bank = loaded.bank
    if bank is None:
        raise OmniSepError("the checkpoint has no query bank (label texts), so usage scores cannot be computed.")
    label_row = {label: row for row, label in enumerate(bank.labels)}
    items = test_set.items
    count = len(test_set.mixtures) if limit is None else min(limit, len(test_set.mixtures))

    class _NoQueries(QueryTable):  # the dataset only needs audio here; queries come from the bank
        def __init__(self):
            self.dim = bank.dim

        def get(self, item_id):
            return torch.zeros(3, bank.dim), torch.ones(3, dtype=torch.bool)

    dataset = MixtureDataset(items, _NoQueries(), training=False, num_sources=len(test_set.mixtures[0]), mixtures=test_set.mixtures)
    queries = normalize(torch.as_tensor(bank.embeddings, dtype=torch.float32))
    # What `omnisep separate --text LABEL` returns carries the model's query contrast; the scan does not.
    # One pass serves both: the plain rows first, then (if the model asks for it) the contrasted outputs.
    # The model's second look (signal_path.look_again) acts on what users get, not on the scan: with one,
    # the three answers are asked in a pass of their own.
    from omnisep.queries import QueryRows, background_query, contrast_terms
    from omnisep.states import contrast_strength, second_look_gate

    strength = contrast_strength(loaded.config, "the checkpoint")
    gate = second_look_gate(loaded.config, "the checkpoint") if second_look is True else (second_look or None)
    background = background_query(bank.embeddings) if strength > 0 else None
    asked = queries
    if strength > 0 and gate is None:
        asked = QueryRows.from_terms([[(row, 1.0)] for row in queries] +
                                     [contrast_terms([(row, 1.0)], background, strength) for row in queries])
    results = []
    for index in range(count):
        row = test_set.mixtures[index]
        target_label, interferer_label = items[row[0]].label, items[row[1]].label
        unknown = [label for label in (target_label, interferer_label) if label not in label_row]
        if unknown:
            raise OmniSepError(f"Test mixture {index} has class '{unknown[0]}', which the model's query bank lacks.")
        present = {items[i].label for i in row}
        absent_label = draw_absent_label(bank.labels, present, seed, index)
        example = dataset[index]
        sources = example["sources"]
        target, interferer, mixture = sources[0].numpy(), sources[1:].sum(0).numpy(), example["mixture"].numpy()
        separated = separate_tensor(loaded.model, example["mixture"], asked).numpy()
        every_label = separated[: len(queries)]  # [labels, T]: the scan's
        wanted = [label_row[target_label], label_row[interferer_label], label_row[absent_label]]
        if gate is not None:
            estimates = separate_tensor(loaded.model, example["mixture"], QueryRows.from_terms(
                [contrast_terms([(queries[row], 1.0)], background, strength) for row in wanted], gate)).numpy()
        else:
            answered = separated[len(queries):] if strength > 0 else every_label
            estimates = answered[wanted]
        mixture_score = score_mixture(target, interferer, mixture, backend)
        own = other = None
        if mixture_score is not None:
            own = score_estimate(target, interferer, mixture, estimates[0], mixture_score, backend)
            # A's reference against what B's query returns: the complement of that estimate holds A.
            other = score_estimate(target, interferer, mixture, estimates[1], mixture_score, backend)
        sdri = own.sdr - own.sdr_mix if own is not None else None
        selectivity = own.sdr - other.sdr if own is not None and other is not None else None
        if own is not None and other is None:
            selectivity = own.sdr - mixture_score.sdr  # B's query returned (near) silence for A: at least this
        absent_db = energy_db(estimates[2][:SCORED_LENGTH], mixture[:SCORED_LENGTH])
        scanned = scan_estimates(bank.labels, every_label, mixture)
        present_rows = [label_row[label] for label in present]
        results.append(UsageItem(
            index=index,
            target_label=target_label,
            interferer_label=interferer_label,
            absent_label=absent_label,
            sdri=sdri,
            selectivity=selectivity,
            absent_db=absent_db,
            top_present=scanned.ranking()[0] in present_rows,
            auc=_auc(scanned.presence, present_rows),
        ))
        if progress is not None:
            progress(index + 1, count)
    return results


def summary(results: list[UsageItem]) -> dict:
    def stats(values):
        values = [v for v in values if v is not None and not math.isnan(v)]
        s = summarize(values) if values else None
        return None if s is None else {"mean": s.mean, "sem": s.sem, "median": s.median, "count": len(values)}

    per_class = defaultdict(list)
    for item in results:
        if item.sdri is not None:
            per_class[item.target_label].append(item.sdri)
    return {
        "mixtures": len(results),
        "absent_query_energy_db": stats([r.absent_db for r in results]),
        "selectivity_db": stats([r.selectivity for r in results]),
        "sdri_text_db": stats([r.sdri for r in results]),
        "scan_top1_present": float(np.mean([r.top_present for r in results])) if results else None,
        "scan_auc": stats([r.auc for r in results]),
        "per_class_sdri_db": {label: stats(values) for label, values in sorted(per_class.items())},
    }


def markdown(report: dict, title: str) -> str:
    def cell(s, digits=2):
        return "n/a" if s is None else f"{s['mean']:.{digits}f} ± {s['sem']:.{digits}f} ({s['median']:.{digits}f})"

    lines = [
        f"# {title}", "",
        f"{report['mixtures']} test mixtures, text queries (the labels). Mean ± SEM (median).", "",
        "| what users notice | value |", "|---|---|",
        f"| energy returned for an absent class (dB re mixture; ideal: -inf) | {cell(report['absent_query_energy_db'])} |",
        f"| selectivity: SDR(A from A's query) - SDR(A from B's query), dB | {cell(report['selectivity_db'])} |",
        f"| SDRi, text query (dB) | {cell(report['sdri_text_db'])} |",
        f"| scan: top label present | {100 * report['scan_top1_present']:.1f} % |",
        f"| scan: present ranked above absent (AUC) | {cell(report['scan_auc'], 3)} |",
        "", "## SDRi per target class (text query)", "", "| class | SDRi (dB) | mixtures |", "|---|---|---|",
    ]
    for label, s in report["per_class_sdri_db"].items():
        lines.append(f"| {label} | {s['mean']:.2f} ± {s['sem']:.2f} | {s['count']} |")
    return "\n".join(lines) + "\n"


def write_usage_report(out_dir, results: list[UsageItem], title: str) -> dict:
    from omnisep.evaluation.reports import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = summary(results)
    atomic_write_text(out_dir / "usage.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out_dir / "usage-items.jsonl", "".join(json.dumps(r.__dict__) + "\n" for r in results))
    atomic_write_text(out_dir / "usage.md", markdown(report, title))
    return report


def evaluate_usage(checkpoint, mixture_path, manifest_path=None, out_dir=None, limit=None, backend="fast", progress=None,
                   second_look: bool | float | None = True) -> dict:
    """Load a checkpoint and a test set, score them, and (with ``out_dir``) write usage.md/.json."""
    from omnisep.data.mixtures import load_test_set
    from omnisep.states import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    test_set = load_test_set(mixture_path, manifest_path)
    if len(test_set.mixtures[0]) != 2:
        raise OmniSepError(f"Test set {describe(mixture_path)}: usage scores need two-source mixtures.")
    with torch.no_grad():
        results = usage_items(loaded, test_set, limit, backend, progress=progress, second_look=second_look)
    if out_dir is None:
        return summary(results)
    return write_usage_report(out_dir, results, f"What users notice: {Path(checkpoint).name}")
