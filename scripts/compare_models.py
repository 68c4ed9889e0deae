"""One Markdown table comparing evaluated models, row by row (SDRi of every Table 1/3 row and the usage scores).

    python scripts/compare_models.py v1=docs/results/v2-candidates/v1 film=docs/results/v2-candidates/film > table.md

Each folder is an ``omnisep evaluate --usage`` output (summary.json, usage.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cell(stats: dict | None) -> str:
    return "n/a" if not stats else f"{stats['mean']:.2f} ± {stats['sem']:.2f}"


def main() -> None:
    runs = [argument.split("=", 1) for argument in sys.argv[1:]]
    if not runs or any(len(run) != 2 for run in runs):
        raise SystemExit(__doc__)
    summaries = {name: json.loads((Path(folder) / "summary.json").read_text()) for name, folder in runs}
    usages = {name: json.loads((Path(folder) / "usage.json").read_text()) if (Path(folder) / "usage.json").exists() else {}
              for name, folder in runs}
    names = [name for name, _ in runs]
    first = summaries[names[0]]
    print(f"{first['items']} test mixtures; SDRi in dB, mean ± SEM.\n")
    print("| row | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for table in ("table1", "table3"):
        for row in first[table]:
            if row.startswith("Unprocessed"):
                continue
            print(f"| {row} (SDRi) | " + " | ".join(cell(summaries[n][table].get(row, {}).get("sdri")) for n in names) + " |")
    rows = [("absent_query_energy_db", "energy for an absent class, dB (lower is better)"),
            ("selectivity_db", "selectivity, dB (higher is better)"),
            ("scan_auc", "scan: present above absent (AUC)")]
    for key, title in rows:
        print(f"| {title} | " + " | ".join(cell(usages[n].get(key)) for n in names) + " |")
    print("| scan: top label present | " + " | ".join(
        f"{100 * usages[n]['scan_top1_present']:.1f} %" if usages[n].get("scan_top1_present") is not None else "n/a" for n in names) + " |")


if __name__ == "__main__":
    main()
