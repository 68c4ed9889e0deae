"""A synthetic four-class corpus for smoke tests and the tiny config.

The classes differ in frequency band and texture (a low harmonic hum, a high
whistle with vibrato, hiss above 5 kHz, decaying bell strikes around
1-1.6 kHz), so a tiny Separate-Net learns to separate them in a minute on a
CPU. Nothing is downloaded: every clip is rendered from a seeded generator.

    omnisep corpus synthetic runs/tiny-corpus
    omnisep train configs/tiny.toml
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omnisep.audio import save_audio
from omnisep.data.manifest import ManifestItem, write_manifest
from omnisep.spectral import SAMPLE_RATE

CLASSES = ("low hum", "high whistle", "hiss", "bell")


def render(label: str, rng: np.random.Generator, seconds: float = 1.0) -> np.ndarray:
    """One clip of ``label``, peak 0.8, float32 mono at 16 kHz."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    if label == "low hum":
        f0 = rng.uniform(100, 180)
        wave = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 5))
    elif label == "high whistle":
        f0 = rng.uniform(2000, 3500)
        wave = np.sin(2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
    elif label == "hiss":
        spectrum = np.fft.rfft(rng.standard_normal(t.size))
        spectrum[np.fft.rfftfreq(t.size, 1 / SAMPLE_RATE) < 5000] = 0
        wave = np.fft.irfft(spectrum, t.size)
    elif label == "bell":
        f0 = rng.uniform(1000, 1600)
        envelope = np.exp(-((t * rng.uniform(3, 5)) % 1.0) * 6)
        wave = envelope * np.sin(2 * np.pi * f0 * t)
    else:
        raise ValueError(f"unknown synthetic class {label!r}")
    return (0.8 * wave / np.abs(wave).max()).astype(np.float32)


def make_corpus(
    folder: str | Path, train_per_class: int = 6, val_per_class: int = 2, test_per_class: int = 0, seed: int = 0
) -> Path:
    """Render wavs and write ``manifest.csv`` (splits train/val/test) under ``folder``; return its path."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    items = []
    splits = ["train"] * train_per_class + ["val"] * val_per_class + ["test"] * test_per_class
    for label in CLASSES:
        for n, split in enumerate(splits):
            item_id = f"{label.replace(' ', '_')}_{n}"
            path = folder / "audio" / f"{item_id}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_audio(path, render(label, rng), SAMPLE_RATE, subtype="FLOAT", overwrite=True)
            items.append(ManifestItem(id=item_id, audio=path, label=label, split=split, source="synthetic"))
    return write_manifest(folder / "manifest.csv", items)

