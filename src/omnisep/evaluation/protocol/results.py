"""From per-mixture scores to the rows of the tables and the sweep's points."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

from omnisep.evaluation import metrics as metric_functions
from omnisep.evaluation.metrics import ItemScore, MixtureScore, Summary
from omnisep.evaluation.protocol.plan import Row
from omnisep.evaluation.reports import ConditionResult


@dataclasses.dataclass
class EvaluationResult:
    table1: list[ConditionResult]
    table3: list[ConditionResult]
    sweep: dict[tuple[str, str], list[tuple[float, Summary]]]
    skipped_items: int
    items: int
    seconds: float
    scores_path: Path | None


def assemble(results: dict, table1: list[Row], table3: list[Row], sweep_plan, count: int, seconds: float, scores_path) -> EvaluationResult:
    by_key: dict[str, list[ItemScore]] = defaultdict(list)
    skipped: dict[str, int] = defaultdict(int)
    mixture_scores: list[ItemScore] = []
    skipped_items = 0
    for index in sorted(results):
        outcome = results[index]
        if outcome["mixture"] is None:
            skipped_items += 1
            continue
        mix = MixtureScore(**outcome["mixture"])
        mixture_scores.append(
            ItemScore(mix.sdr, mix.sir, mix.sar, mix.si_sdr, mix.sdr, mix.sir, mix.sar, mix.si_sdr)
        )
        for key, score in outcome["scores"].items():
            if score is None:
                skipped[key] += 1
            else:
                by_key[key].append(ItemScore.from_dict(score))

    def rows(plan: list[Row]) -> list[ConditionResult]:
        out = []
        for row in plan:
            if row.key == "mixture":
                out.append(ConditionResult(row.name, row.group, mixture_scores, skipped_items))
            else:
                out.append(ConditionResult(row.name, row.group, by_key[row.key], skipped[row.key] + skipped_items))
        return out

    sweep = {
        pair: [(alpha, metric_functions.summarize([s.sdr for s in by_key[key]])) for alpha, key in points]
        for pair, points in sweep_plan.items()
    }
    return EvaluationResult(rows(table1), rows(table3), sweep, skipped_items, count, seconds, scores_path)
