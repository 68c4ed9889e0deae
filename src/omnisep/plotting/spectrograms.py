"""Spectrogram pictures of a mixture and what was separated from it.

Panels share one dB scale (the loudest panel's peak down to 80 dB below it),
so a quiet target looks quiet next to its mixture instead of being
re-normalised into looking like it. Spectrograms are computed block by block
with at most ``max_columns`` frames, so an hour-long file plots in flat memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnisep.audio import AudioReader
from omnisep.plotting import CMAP, new_figure, save_figure

DYNAMIC_RANGE_DB = 80.0
DEFAULT_N_FFT = 2048
DEFAULT_MAX_COLUMNS = 2000


@dataclass
class Spectrogram:
    db: np.ndarray  # [frequencies, frames] power in dB
    times: np.ndarray  # [frames] start of each frame in seconds
    freqs: np.ndarray  # [frequencies] Hz
    duration: float


def _hop_for(n_samples: int, n_fft: int, max_columns: int) -> int:
    return max(n_fft // 4, math.ceil(max(n_samples, 1) / max_columns))


def _spectrogram(blocks: Iterable[np.ndarray], sample_rate: int, hop: int, n_fft: int) -> Spectrogram:
    """Frames start every ``hop`` samples, ``ceil(T / hop)`` of them; the tail is zero-padded."""
    window = np.hanning(n_fft).astype(np.float32)
    columns: list[np.ndarray] = []
    buffer = np.zeros(0, np.float32)
    buffer_start = 0  # sample index of buffer[0]
    total = 0

    def take_frames() -> None:
        nonlocal buffer, buffer_start
        while len(columns) * hop + n_fft <= buffer_start + buffer.shape[0]:
            offset = len(columns) * hop - buffer_start
            columns.append(np.abs(np.fft.rfft(buffer[offset : offset + n_fft] * window)) ** 2)
        drop = min(max(0, len(columns) * hop - buffer_start), buffer.shape[0])
        buffer, buffer_start = buffer[drop:], buffer_start + drop

    for block in blocks:
        mono = np.asarray(block, np.float32)
        mono = mono.mean(axis=0) if mono.ndim == 2 else mono
        total += mono.shape[0]
        buffer = np.concatenate([buffer, mono])
        take_frames()
    n_frames = max(1, math.ceil(total / hop))
    padding = (n_frames - 1) * hop + n_fft - (buffer_start + buffer.shape[0])
    if padding > 0:
        buffer = np.concatenate([buffer, np.zeros(padding, np.float32)])
    take_frames()
    power = np.stack(columns[:n_frames], axis=1) / (window.sum() ** 2)
    return Spectrogram(
        db=10.0 * np.log10(power + 1e-12),
        times=np.arange(n_frames) * hop / sample_rate,
        freqs=np.fft.rfftfreq(n_fft, 1.0 / sample_rate),
        duration=total / sample_rate,
    )


def spectrogram(
    audio: np.ndarray, sample_rate: int, n_fft: int = DEFAULT_N_FFT, max_columns: int = DEFAULT_MAX_COLUMNS
) -> Spectrogram:
    """Power spectrogram in dB of ``[C, T]`` or ``[T]`` audio (channels averaged)."""
    audio = np.asarray(audio, np.float32)
    hop = _hop_for(audio.shape[-1], n_fft, max_columns)
    return _spectrogram([audio], sample_rate, hop, n_fft)


def file_spectrogram(
    path: str | os.PathLike, n_fft: int = DEFAULT_N_FFT, max_columns: int = DEFAULT_MAX_COLUMNS
) -> Spectrogram:
    """Like :func:`spectrogram`, read block by block from a file."""
    reader = AudioReader(path)
    estimate = reader.duration_estimate
    n_samples = round(estimate * reader.sample_rate) if estimate else 10 * 60 * reader.sample_rate
    return _spectrogram(reader, reader.sample_rate, _hop_for(n_samples, n_fft, max_columns), n_fft)


def spectrogram_figure(panels: Sequence[tuple[str, Spectrogram]], title: str | None = None):
    """A matplotlib Figure with one panel per (name, spectrogram), on one shared dB scale."""
    top = max(float(s.db.max()) for _, s in panels)
    figure = new_figure(10, 2.2 * len(panels) + 0.6)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    image = None
    for axis, (name, spec) in zip(axes, panels):
        hop_seconds = spec.times[1] - spec.times[0] if len(spec.times) > 1 else spec.duration
        extent = (0.0, spec.times[-1] + hop_seconds, spec.freqs[0] / 1000, spec.freqs[-1] / 1000)
        image = axis.imshow(
            spec.db,
            origin="lower",
            aspect="auto",
            extent=extent,
            vmin=top - DYNAMIC_RANGE_DB,
            vmax=top,
            cmap=CMAP,
            interpolation="nearest",
        )
        axis.set_ylabel("kHz")
        axis.set_title(name, loc="left", fontsize=10)
    axes[-1].set_xlabel("time (s)")
    figure.colorbar(image, ax=list(axes), label="dB")
    if title:
        figure.suptitle(title)
    return figure


def plot_separation(path: str | os.PathLike, panels: Sequence[tuple[str, Spectrogram]], title: str | None = None) -> Path:
    """Mixture / target / residual (or any panels) into one PNG."""
    return save_figure(spectrogram_figure(panels, title), path)
