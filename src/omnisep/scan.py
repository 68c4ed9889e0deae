"""Which of a model's labels sound in a recording, and when.

Every label of the checkpoint's query bank is separated from the recording at
once: the queries only weight the U-Net's k masks, so the whole bank costs one
U-Net pass per chunk. A label's separated energy, divided by the mixture's in
the same frame, says how much of what is heard there the model attributes to
that label; a ratio near 1 means "this is all that sounds", near 0 "absent".
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile

import numpy as np
import torch

from omnisep.errors import OmniSepError, describe
from omnisep.spectral import SAMPLE_RATE

DEFAULT_FRAME_SECONDS = 0.5
DEFAULT_THRESHOLD = 0.3  # two equally loud sources each explain about half the energy
PRESENCE_QUANTILE = 0.9  # a label heard in a tenth of the audible frames still counts
SILENCE_DB = -60.0  # frames this far below the loudest one carry no evidence
# Separated samples held at once (queries x samples); bounds memory for big banks.
MAX_SAMPLES_IN_FLIGHT = 2**26
# Audio added on each side of a block so that its edges are separated with context.
CONTEXT_SECONDS = 1.0


@dataclasses.dataclass
class ScanResult:
    """Per-label energy ratio over time and one presence score per label.

    ``energy_ratio[i, f]`` is label ``i``'s separated energy over the mixture's
    in frame ``f`` (0 where the mixture is silent, see ``audible``).
    """

    labels: list[str]
    times: np.ndarray  # [F] start of each frame in seconds
    frame_seconds: float
    duration: float
    energy_ratio: np.ndarray  # [N, F] in [0, 1]
    audible: np.ndarray  # [F] bool
    presence: np.ndarray  # [N] in [0, 1]

    def ranking(self) -> list[int]:
        """Label indices, most present first (ties keep the bank's order)."""
        return sorted(range(len(self.labels)), key=lambda i: -float(self.presence[i]))

    def segments(self, index: int, threshold: float = DEFAULT_THRESHOLD) -> list[tuple[float, float]]:
        """Time spans (seconds) where the label's ratio reaches the threshold."""
        spans: list[tuple[float, float]] = []
        start = None
        hits = (self.energy_ratio[index] >= threshold) & self.audible
        for f, hit in enumerate(hits):
            if hit and start is None:
                start = float(self.times[f])
            if not hit and start is not None:
                spans.append((start, float(self.times[f])))
                start = None
        if start is not None:
            spans.append((start, self.duration))
        return spans

    def to_dict(self, threshold: float = DEFAULT_THRESHOLD) -> dict:
        """JSON-ready summary, labels sorted by presence."""
        return {
            "format": "omnisep-scan",
            "format_version": 1,
            "sample_rate": SAMPLE_RATE,
            "duration_seconds": round(self.duration, 4),
            "frame_seconds": self.frame_seconds,
            "threshold": threshold,
            "times": [round(float(t), 4) for t in self.times],
            "audible": [bool(a) for a in self.audible],
            "labels": [
                {
                    "label": self.labels[i],
                    "presence": round(float(self.presence[i]), 4),
                    "present": bool(self.presence[i] >= threshold),
                    "segments": [[round(a, 4), round(b, 4)] for a, b in self.segments(i, threshold)],
                    "energy_ratio": [round(float(r), 4) for r in self.energy_ratio[i]],
                }
                for i in self.ranking()
            ],
        }


def _model_and_bank(source):
    """Accept a Separator or a loaded checkpoint: anything with ``model`` and ``bank``."""
    model = getattr(source, "model", None)
    bank = getattr(source, "bank", None)
    if model is None:
        raise TypeError(f"scan() needs a Separator or a loaded checkpoint, not {type(source).__name__}")
    if bank is None:
        raise OmniSepError("the model has no query bank, so there are no labels to scan for")
    return model, bank


def _mono_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    wave = np.asarray(audio, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=0)
    if wave.ndim != 1:
        raise ValueError(f"audio must be [C, T] or [T], got shape {tuple(np.shape(audio))}")
    if sample_rate != SAMPLE_RATE:
        from omnisep.audio import resample

        wave = resample(wave, sample_rate, SAMPLE_RATE)
    return np.ascontiguousarray(wave, dtype=np.float32)


def _frame_energy(wave: np.ndarray, frame: int) -> np.ndarray:
    """Sum of squares per frame over the last axis; the last frame may be short."""
    n_frames = math.ceil(wave.shape[-1] / frame)
    padded = np.zeros(wave.shape[:-1] + (n_frames * frame,), dtype=np.float64)
    padded[..., : wave.shape[-1]] = wave
    return np.square(padded).reshape(wave.shape[:-1] + (n_frames, frame)).sum(axis=-1)


def scan(
    separator_or_model,
    audio: np.ndarray,
    sample_rate: int,
    frame_seconds: float = DEFAULT_FRAME_SECONDS,
) -> ScanResult:
    """Separate every bank label from ``audio`` and score its presence per frame."""
    from omnisep.apply import separate_tensor
    from omnisep.queries import normalize

    if not frame_seconds > 0:
        raise OmniSepError(f"the frame length must be positive, got {frame_seconds} s")
    model, bank = _model_and_bank(separator_or_model)
    wave = _mono_16k(audio, sample_rate)
    frame = max(1, round(frame_seconds * SAMPLE_RATE))
    n_samples = wave.shape[-1]
    n_frames = math.ceil(n_samples / frame)
    queries = normalize(torch.as_tensor(bank.embeddings, dtype=torch.float32))
    n_labels = queries.shape[0]

    # Whole frames per block, so that no frame straddles two separations.
    block_frames = max(1, MAX_SAMPLES_IN_FLIGHT // (n_labels * frame))
    context = round(CONTEXT_SECONDS * SAMPLE_RATE)
    target_energy = np.zeros((n_labels, n_frames), dtype=np.float64)
    for first in range(0, n_frames, block_frames):
        start = first * frame
        stop = min(n_samples, (first + block_frames) * frame)
        lo, hi = max(0, start - context), min(n_samples, stop + context)
        with torch.inference_mode():
            separated = separate_tensor(model, torch.from_numpy(wave[lo:hi]), queries)
        block = separated[:, start - lo : stop - lo].cpu().numpy()
        energy = _frame_energy(block, frame)
        target_energy[:, first : first + energy.shape[1]] = energy

    mixture_energy = _frame_energy(wave, frame)
    loudest = float(mixture_energy.max()) if n_frames else 0.0
    audible = (mixture_energy > loudest * 10 ** (SILENCE_DB / 10)) & (mixture_energy > 1e-12)
    ratio = np.zeros_like(target_energy)
    np.divide(target_energy, mixture_energy, out=ratio, where=audible[None, :])
    ratio = np.clip(ratio, 0.0, 1.0)
    if audible.any():
        presence = np.quantile(ratio[:, audible], PRESENCE_QUANTILE, axis=1)
    else:
        presence = np.zeros(n_labels)
    return ScanResult(
        labels=list(bank.labels),
        times=np.arange(n_frames) * frame / SAMPLE_RATE,
        frame_seconds=frame / SAMPLE_RATE,
        duration=n_samples / SAMPLE_RATE,
        energy_ratio=ratio.astype(np.float32),
        audible=audible,
        presence=presence.astype(np.float32),
    )


def plot_scan(
    result: ScanResult,
    path: str | os.PathLike,
    threshold: float = DEFAULT_THRESHOLD,
    max_labels: int = 20,
    title: str | None = None,
) -> None:
    """Time x label heat map of the most present labels, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise OmniSepError(f"the plot {describe(path)} must be a .png file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OmniSepError(f"cannot write the plot {describe(path)}: its folder does not exist")

    rows = result.ranking()[:max_labels]
    heat = np.ma.masked_array(
        result.energy_ratio[rows], mask=np.broadcast_to(~result.audible, (len(rows), result.audible.size))
    )
    cmap = matplotlib.colormaps["magma"].copy()
    cmap.set_bad("#d0d0d0")  # silent frames: no evidence either way
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.32 * max(len(rows), 1)), dpi=110)
    image = ax.imshow(
        heat,
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        extent=(0.0, result.times.size * result.frame_seconds, len(rows) - 0.5, -0.5),
    )
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(
        [f"{result.labels[i]}  {result.presence[i]:.2f}{' *' if result.presence[i] >= threshold else ''}" for i in rows]
    )
    ax.set_xlabel("time (s)")
    ax.set_title(title or f"scan: share of the mixture's energy per label (* present, threshold {threshold:g})")
    fig.colorbar(image, ax=ax, label="energy ratio", pad=0.01)
    fig.tight_layout()
    handle, tmp = tempfile.mkstemp(suffix=".png", dir=folder)
    os.close(handle)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
