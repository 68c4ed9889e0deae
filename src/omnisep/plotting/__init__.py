"""Every figure omnisep draws, in one style, saved one way.

The style: matplotlib's object API (``matplotlib.figure.Figure``: no pyplot,
no GUI backend, the caller's backend left alone), constrained layout, one
resolution and one colour map for intensities; PNGs are written atomically.
The figures themselves, one module each: ``spectrograms`` (separate --plot,
the demo), ``sweep`` (the paper's Fig. 2), ``scan`` (the scan heat map) and
``training`` (loss curves of a run).
"""

from __future__ import annotations

import os
from pathlib import Path

from omnisep import fileio
from omnisep.errors import OmniSepError, describe

DPI = 100
CMAP = "magma"  # intensities: spectrogram dB, scan energy ratios


def new_figure(width: float, height: float):
    """An empty figure of ``width`` x ``height`` inches in the house style."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def check_png_path(path: str | os.PathLike) -> str:
    """Refuse a bad plot path before minutes of work, not after."""
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise OmniSepError(f"the plot {describe(path)} must be a .png file")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise OmniSepError(f"cannot write the plot {describe(path)}: its folder does not exist")
    return path


def save_figure(figure, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Write a PNG atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    with fileio.output_errors(path), fileio.atomic_path(path) as temp:
        figure.savefig(temp, format="png", dpi=dpi)
    return path
