"""What every source family hands to the builder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clip:
    """One finished 16 kHz mono clip and where it came from."""

    audio: np.ndarray
    sources: tuple[str, ...]  # source recording ids (a render's id is its seed): the unit of splitting
    package: str  # the registry package the sound comes from, e.g. "debian:fluid-soundfont-gm"
    licence: str


@dataclass(frozen=True)
class SourcePackage:
    """A row of sources.md: one package a family used, and under which licence."""

    package: str
    version: str
    licence: str
    used_for: str
