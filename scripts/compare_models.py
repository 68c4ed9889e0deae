"""One Markdown table comparing evaluated models, row by row (SDRi of every Table 1/3 row and the usage scores).

    python scripts/compare_models.py v1=docs/results/v2-candidates/v1 film=docs/results/v2-candidates/film > table.md

Each folder is an ``omnisep evaluate --usage`` output (summary.json, usage.json).
Negative-query rows are matched by query mode: each model's row carries its own
negative mode and alpha (the defaults it records), listed in a last row.

A second table gives, for every query form all the models scored, the paired change against the first
model: the mean over mixtures of (SDRi of the model - SDRi of the first) ± its SEM, from scores.jsonl.
Two models on the same mixtures differ far less than their SEMs across mixtures suggest; this is the
number that says whether a 0.1 dB change is real.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

NQ_SETTING = re.compile(r" \+ NQ \((\w+), α=([^,]+), (\w+)\)")


def generic(row: str) -> str:
    """``text query + NQ (text, α=2, logit)`` -> ``text query + NQ (text, own default)``."""
    return NQ_SETTING.sub(lambda m: f" + NQ ({m.group(1)}, own default)", row)


def settings(summary: dict) -> str:
    found = {f"{m.group(3)}, α {m.group(2)}" for row in summary["table1"] for m in [NQ_SETTING.search(row)] if m}
    return "; ".join(sorted(found)) or "n/a"


def cell(stats: dict | None) -> str:
    return "n/a" if not stats else f"{stats['mean']:.2f} ± {stats['sem']:.2f}"


def main() -> None:
    runs = [argument.split("=", 1) for argument in sys.argv[1:]]
    if not runs or any(len(run) != 2 for run in runs):
        raise SystemExit(__doc__)
    for name, folder in runs:
        if not (Path(folder) / "summary.json").is_file():
            raise SystemExit(f"compare_models: {folder} has no summary.json (is its `omnisep evaluate` finished?).")
    summaries = {name: json.loads((Path(folder) / "summary.json").read_text()) for name, folder in runs}
    usages = {name: json.loads((Path(folder) / "usage.json").read_text()) if (Path(folder) / "usage.json").exists() else {}
              for name, folder in runs}
    names = [name for name, _ in runs]
    first = summaries[names[0]]
    print(f"{first['items']} test mixtures; SDRi in dB, mean ± SEM.\n")
    print("| row | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for table in ("table1", "table3"):
        by_name = {n: {generic(row): value for row, value in summaries[n][table].items()} for n in names}
        for row in first[table]:
            if row.startswith("Unprocessed"):
                continue
            row = generic(row)
            print(f"| {row} (SDRi) | " + " | ".join(cell(by_name[n].get(row, {}).get("sdri")) for n in names) + " |")
    rows = [("absent_query_energy_db", "energy for an absent class, dB (lower is better)"),
            ("selectivity_db", "selectivity, dB (higher is better)"),
            ("scan_auc", "scan: present above absent (AUC)")]
    for key, title in rows:
        print(f"| {title} | " + " | ".join(cell(usages[n].get(key)) for n in names) + " |")
    print("| scan: top label present | " + " | ".join(
        f"{100 * usages[n]['scan_top1_present']:.1f} %" if usages[n].get("scan_top1_present") is not None else "n/a" for n in names) + " |")
    print("| negative queries (mode, alpha) | " + " | ".join(settings(summaries[n]) for n in names) + " |")
    paired_table(runs)


def item_sdri(folder: Path) -> dict[str, dict[str, float]]:
    """{query form: {mixture id: SDRi}} from an evaluation's scores.jsonl (empty when absent)."""
    path = folder / "scores.jsonl"
    found: dict[str, dict[str, float]] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for form, score in row.get("scores", {}).items():
            if score and "sdri" in score:
                found.setdefault(form, {})[row["mixture_id"]] = score["sdri"]
    return found


def paired_table(runs: list[list[str]]) -> None:
    scores = {name: item_sdri(Path(folder)) for name, folder in runs}
    names = [name for name, _ in runs]
    base = scores[names[0]]
    forms = [form for form in base if all(form in scores[n] for n in names[1:])]
    if len(names) < 2 or not forms:
        return
    print(f"\nPaired change against {names[0]} (dB, mean ± SEM over the mixtures both scored):\n")
    print("| query form | " + " | ".join(names[1:]) + " |")
    print("|---|" + "---|" * (len(names) - 1))
    for form in sorted(forms):
        cells = []
        for name in names[1:]:
            shared = sorted(base[form].keys() & scores[name][form].keys())
            deltas = [scores[name][form][key] - base[form][key] for key in shared]
            mean = sum(deltas) / len(deltas)
            spread = math.sqrt(sum((d - mean) ** 2 for d in deltas) / max(1, len(deltas) - 1) / len(deltas))
            cells.append(f"{mean:+.2f} ± {spread:.2f}")
        print(f"| {form} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
