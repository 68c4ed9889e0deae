"""Draw docs/images/architecture.png: the layers of the package and the data path.

    python scripts/draw_architecture.py [docs/images/architecture.png]

The layers come from the table in docs/ARCHITECTURE.md (the one
tests/test_layering.py enforces), the data path from this file; matplotlib, in
the house style of omnisep.plotting.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from omnisep.plotting import new_figure, save_figure

DOC = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"


def read_layers(doc: Path = DOC) -> list[tuple[str, str]]:
    """``[(name, "module · module"), ...]``, lowest layer first, from the rows ``| N name | `a`, `b/` | ... |``."""
    section = doc.read_text(encoding="utf-8").split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) ([^|]*)\| ([^|]*)\|", section, flags=re.MULTILINE)
    return [(name.strip(), " · ".join(re.findall(r"`([^`]+)`", modules))) for _, name, modules in sorted(rows, key=lambda r: int(r[0]))]


LAYER_COLOURS = ["#e8eef7", "#dfe9f5", "#d5e4f2", "#cadeef", "#bfd7ec", "#b3cfe8", "#a6c6e3"]

QUERY = "#fde7c8"
AUDIO = "#d9f0d3"
MODEL = "#e6dcf2"
STORE = "#f2f2f2"


def box(axis, x, y, w, h, text, colour, size=8.5, bold=False):
    axis.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.008,rounding_size=0.012",
                                  facecolor=colour, edgecolor="#555555", linewidth=0.8))
    axis.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size,
              fontweight="bold" if bold else "normal", wrap=True)


def arrow(axis, start, end, text=None, offset=(0.0, 0.0)):
    axis.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, linewidth=0.9, color="#333333"))
    if text:
        middle = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
        axis.text(*middle, text, fontsize=7, color="#333333", ha="left", va="center", style="italic")


def draw_layers(axis):
    axis.set_title("Layers: each imports only from its own and lower ones", fontsize=10, loc="left")
    height, gap = 0.12, 0.018
    for level, ((name, modules), colour) in enumerate(zip(read_layers(), LAYER_COLOURS)):
        y = 0.02 + level * (height + gap)
        box(axis, 0.02, y, 0.96, height, "", colour)
        axis.text(0.05, y + height * 0.68, f"{level}  {name}", fontsize=8.5, fontweight="bold", va="center")
        axis.text(0.05, y + height * 0.28, modules, fontsize=8.5, va="center", family="monospace")


def draw_data_path(axis):
    axis.set_title("Data path: one query vector weights the network's k masks", fontsize=10, loc="left")
    w = 0.27
    # query side (left column)
    box(axis, 0.02, 0.86, w, 0.09, "text · image / video · audio\n(modalities.py)", QUERY)
    box(axis, 0.02, 0.70, w, 0.09, "encoders/\nembed(modality, items)", QUERY)
    box(axis, 0.02, 0.54, w, 0.09, "queries.py  eq. 1 compose,\neq. 5 Query-Aug, eq. 4 negative", QUERY)
    arrow(axis, (0.155, 0.86), (0.155, 0.79))
    arrow(axis, (0.155, 0.70), (0.155, 0.63))
    # audio side (middle column): the signal path
    x = 0.36
    box(axis, x, 0.86, w, 0.09, "file: any format, rate, channels\naudio.py -> 16 kHz", AUDIO)
    box(axis, x, 0.70, w, 0.09, "STFT |X| -> log-frequency warp\n(spectral.py)", MODEL)
    box(axis, x, 0.54, w, 0.09, "network: k query-free masks\n(models/, U-Net)", MODEL)
    box(axis, x, 0.38, w, 0.09, "eq. 2: mask = σ(Σ_c w_c(q) F_c + b)\n-> un-warp -> × X -> iSTFT", MODEL)
    box(axis, x, 0.22, w, 0.09, "target; residual = mixture - target", AUDIO)
    for top in (0.86, 0.70, 0.54, 0.38):
        arrow(axis, (x + w / 2, top), (x + w / 2, top - 0.07))
    arrow(axis, (0.02 + w, 0.585), (x, 0.425), "query vector", offset=(-0.06, -0.055))
    # The signal path's owner: every user below runs these same steps.
    axis.add_patch(FancyBboxPatch((x - 0.015, 0.365), w + 0.03, 0.44, boxstyle="round,pad=0.004,rounding_size=0.015",
                                  facecolor="none", edgecolor="#7a5fa8", linewidth=1.0, linestyle="--"))
    axis.text(x + w / 2, 0.17, "models/: one signal path for separate, scan, evaluation and\n"
              "the training loss; apply.py cuts long files into chunks and streams them",
              fontsize=7, ha="center", va="center", style="italic")
    # users of the path (right column)
    x2 = 0.70
    box(axis, x2, 0.86, w, 0.09, "cli/ · demo/ · api.Separator\n(whole files, streamed)", STORE, bold=True)
    box(axis, x2, 0.70, w, 0.09, "scan.py: every bank label\nin one pass", STORE)
    box(axis, x2, 0.54, w, 0.09, "evaluation/protocol: scores\nwhat `omnisep separate` writes", STORE)
    box(axis, x2, 0.38, w, 0.09, "training/: Query-Mixup, weighted\nBCE -> checkpoint (states.py)", STORE)
    box(axis, x2, 0.05, w, 0.14, "data/: manifest, embedding cache,\nmixing, mixture lists\n(corpus/, recipes/)", STORE)
    arrow(axis, (x2 + w / 2, 0.19), (x2 + w / 2, 0.38))
    axis.text(x2 + w / 2 + 0.01, 0.285, "items, embeddings,\nfixed mixtures", fontsize=7, style="italic", va="center")
    for y in (0.905, 0.745, 0.585, 0.425):
        arrow(axis, (x2, y), (x + w + (0.015 if y < 0.8 else 0.0), y))


def main(output: Path) -> Path:
    figure = new_figure(15, 6.2)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.9]})
    for axis in (left, right):
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.axis("off")
    draw_layers(left)
    draw_data_path(right)
    return save_figure(figure, output)


if __name__ == "__main__":
    print(f"wrote {main(Path(sys.argv[1] if len(sys.argv) > 1 else 'docs/images/architecture.png'))}")
