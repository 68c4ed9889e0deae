"""The rows of Tables 1 and 3 and the alpha sweep, and the unique queries they need."""

from __future__ import annotations

import dataclasses

from omnisep.evaluation.protocol.config import MODE_GROUPS, QUERY_AUG_GROUP, EvaluationConfig
from omnisep.queries import NEGATIVE_MODES


@dataclasses.dataclass(frozen=True)
class QuerySpec:
    """How one query is built for an item; equal specs share one estimate and one score."""

    modality: str  # text | image | audio | composed | description
    query_aug: bool = False
    alpha: float = 0.0
    negative_mode: str = "none"

    @classmethod
    def make(cls, modality: str, query_aug: bool = False, alpha: float = 0.0, negative_mode: str = "proportional") -> "QuerySpec":
        # alpha = 0 is "no negative query" in both forms of eq. 4.
        if alpha == 0:
            return cls(modality, query_aug, 0.0, "none")
        return cls(modality, query_aug, float(alpha), negative_mode)

    @property
    def key(self) -> str:
        parts = [self.modality]
        if self.query_aug:
            parts.append("aug")
        if self.negative_mode != "none":
            parts.append(f"neg-{self.negative_mode}-{self.alpha:g}")
        return "/".join(parts)


ORACLE_KEYS = ("oracle/ibm", "oracle/irm")


@dataclasses.dataclass(frozen=True)
class Row:
    """One table row: a name, its group, and the estimate it scores."""

    name: str
    group: str
    key: str  # a QuerySpec key, an oracle key, or "mixture"


def plan_rows(config: EvaluationConfig) -> tuple[list[Row], list[Row], dict[tuple[str, str], list[tuple[float, str]]], list[QuerySpec]]:
    """Table 1 rows, Table 3 rows, the sweep's (modality, mode) -> [(alpha, key)], and the unique query specs."""
    specs: dict[str, QuerySpec] = {}

    def use(spec: QuerySpec) -> str:
        specs.setdefault(spec.key, spec)
        return spec.key

    table1 = [Row("Unprocessed mixture", "Reference", "mixture")]
    if config.oracles:
        table1 += [Row("Oracle ideal binary mask", "Reference", "oracle/ibm"), Row("Oracle ideal ratio mask", "Reference", "oracle/irm")]
    negative_source = config.negative_source
    for mode in config.modes:
        group = MODE_GROUPS.get(mode, f"{mode.capitalize()}-queried")
        table1.append(Row(f"{mode} query", group, use(QuerySpec.make(mode))))
        if config.with_negative:
            source = mode if negative_source == "same" else negative_source
            name = f"{mode} query + NQ ({source}, α={config.alpha:g}, {config.negative_mode})"
            table1.append(Row(name, group, use(QuerySpec.make(mode, alpha=config.alpha, negative_mode=config.negative_mode))))

    table3: list[Row] = []
    if config.descriptions is not None:
        table3 = [
            Row("class labels", QUERY_AUG_GROUP, use(QuerySpec.make("text"))),
            Row("class labels + Query-Aug", QUERY_AUG_GROUP, use(QuerySpec.make("text", query_aug=True))),
            Row("free-form descriptions", QUERY_AUG_GROUP, use(QuerySpec.make("description"))),
            Row("free-form descriptions + Query-Aug", QUERY_AUG_GROUP, use(QuerySpec.make("description", query_aug=True))),
        ]

    sweep: dict[tuple[str, str], list[tuple[float, str]]] = {}
    if config.alpha_sweep:
        for mode in config.sweep_modes:
            if mode not in config.modes:
                continue
            for negative_mode in NEGATIVE_MODES:
                sweep[(mode, negative_mode)] = [
                    (alpha, use(QuerySpec.make(mode, alpha=alpha, negative_mode=negative_mode))) for alpha in config.alpha_sweep
                ]
    return table1, table3, sweep, list(specs.values())
