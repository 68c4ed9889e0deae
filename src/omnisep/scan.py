"""Which of a model's labels sound in a recording, and when.

Every label of the checkpoint's query bank is separated from the recording at
once: the queries only weight the U-Net's k masks, so the whole bank costs one
U-Net pass per chunk. A label's separated energy, divided by the mixture's in
the same frame, says how much of what is heard there the model attributes to
that label; a ratio near 1 means "this is all that sounds", near 0 "absent".
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from omnisep.errors import OmniSepError
from omnisep.spectral import SAMPLE_RATE

DEFAULT_FRAME_SECONDS = 0.5
# Best clip-level F1 of presence on the corpus's validation mixtures with the bundled model
# (docs/results/scan-presence/, scripts/evaluate_query_tools.sh); rerun that for another model.
DEFAULT_THRESHOLD = 0.425
PRESENCE_QUANTILE = 0.9  # a label heard in a tenth of the audible frames still counts
SILENCE_DB = -60.0  # frames this far below the loudest one carry no evidence
# Audio is streamed through the separator in blocks, so memory stays bounded by
# the separator's chunk size times the bank size, not by the file's length.
STREAM_BLOCK_SECONDS = 10.0


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


class _FrameMeter:
    """Sums of squares per frame for [Q, n] blocks arriving in order."""

    def __init__(self, rows: int, frame: int):
        self.frame = frame
        self.leftover = np.zeros((rows, 0), dtype=np.float32)
        self.energies: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        samples = np.concatenate([self.leftover, block], axis=1)
        whole = samples.shape[1] // self.frame * self.frame
        if whole:
            # Squares in float32, sums in float64: no float64 copy of a [Q, n] block.
            framed = samples[:, :whole].reshape(samples.shape[0], -1, self.frame)
            self.energies.append(np.square(framed).sum(axis=-1, dtype=np.float64))
        self.leftover = samples[:, whole:].copy()  # not a view that keeps the whole block alive

    def close(self) -> np.ndarray:
        """``[Q, frames]``; a short last frame counts the samples it has."""
        if self.leftover.shape[1]:
            self.energies.append(np.square(self.leftover.astype(np.float64)).sum(axis=-1, keepdims=True))
        return np.concatenate(self.energies, axis=1) if self.energies else np.zeros((self.leftover.shape[0], 0))


def _frame_samples(frame_seconds: float) -> int:
    """The scan's frame length in 16 kHz samples (at least one); a frame that is not positive is refused."""
    if not frame_seconds > 0:
        raise OmniSepError(f"the frame length must be positive, got {frame_seconds} s")
    return max(1, round(frame_seconds * SAMPLE_RATE))


class ScanStream:
    """Scan audio that arrives in blocks: mono 16 kHz samples in, a :class:`ScanResult` at the end.

    Holds about one separator chunk of audio plus one number per (label,
    frame), so an hour costs the memory of a minute (the per-frame ratios
    grow by ``labels x 4`` bytes per frame).
    """

    def __init__(self, separator_or_model, frame_seconds: float = DEFAULT_FRAME_SECONDS):
        from omnisep.apply import ChunkedSeparator
        from omnisep.queries import normalize

        self.frame = _frame_samples(frame_seconds)
        self.model, self.bank = _model_and_bank(separator_or_model)
        queries = normalize(torch.as_tensor(self.bank.embeddings, dtype=torch.float32))
        # ChunkedSeparator is separate_tensor's engine: one U-Net pass per chunk for
        # the whole bank; fed block by block, it never holds [Q, T] for the file.
        self._was_training = self.model.training
        self.model.eval()  # BatchNorm must use its running statistics
        self.engine = ChunkedSeparator(self.model, queries, signals=1)
        self.targets = _FrameMeter(len(self.bank.labels), self.frame)
        self.mixture = _FrameMeter(1, self.frame)
        self.samples = 0

    def push(self, wave: np.ndarray) -> None:
        """Add mono 16 kHz samples ``[n]``."""
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        step = max(1, round(STREAM_BLOCK_SECONDS * SAMPLE_RATE))
        for start in range(0, wave.size, step):
            block = wave[start : start + step]
            self.mixture.add(block[None])
            self.targets.add(self.engine.push(block[None])[:, 0])
        self.samples += wave.size

    def finish(self) -> ScanResult:
        try:
            self.targets.add(self.engine.finish()[:, 0])
        finally:
            self.model.train(self._was_training)
        return _result(self.bank.labels, self.targets.close(), self.mixture.close()[0], self.frame, self.samples)


def _result(labels, target_energy: np.ndarray, mixture_energy: np.ndarray, frame: int, n_samples: int) -> ScanResult:
    n_frames = mixture_energy.size
    loudest = float(mixture_energy.max()) if n_frames else 0.0
    audible = (mixture_energy > loudest * 10 ** (SILENCE_DB / 10)) & (mixture_energy > 1e-12)
    ratio = np.zeros_like(target_energy)
    np.divide(target_energy, mixture_energy, out=ratio, where=audible[None, :])
    ratio = np.clip(ratio, 0.0, 1.0)
    if audible.any():
        presence = np.quantile(ratio[:, audible], PRESENCE_QUANTILE, axis=1)
    else:
        presence = np.zeros(len(labels))
    return ScanResult(
        labels=list(labels),
        times=np.arange(n_frames) * frame / SAMPLE_RATE,
        frame_seconds=frame / SAMPLE_RATE,
        duration=n_samples / SAMPLE_RATE,
        energy_ratio=ratio.astype(np.float32),
        audible=audible,
        presence=presence.astype(np.float32),
    )


def scan_estimates(
    labels, estimates: np.ndarray, mixture: np.ndarray, frame_seconds: float = DEFAULT_FRAME_SECONDS
) -> ScanResult:
    """:func:`scan`'s result from every label's estimate ``[N, T]`` of a mono 16 kHz ``mixture [T]``, already separated.

    For callers that need the estimates as well (evaluation): given what :func:`scan`'s
    engine separates (``apply.separate_tensor`` of the bank's normalised rows), the result
    is :func:`scan`'s, number for number.
    """
    frame = _frame_samples(frame_seconds)
    targets, mix = _FrameMeter(len(labels), frame), _FrameMeter(1, frame)
    targets.add(np.asarray(estimates, dtype=np.float32))
    mix.add(np.asarray(mixture, dtype=np.float32).reshape(1, -1))
    return _result(labels, targets.close(), mix.close()[0], frame, mixture.size)


def scan(
    separator_or_model,
    audio: np.ndarray,
    sample_rate: int,
    frame_seconds: float = DEFAULT_FRAME_SECONDS,
) -> ScanResult:
    """Separate every bank label from ``audio`` and score its presence per frame."""
    stream = ScanStream(separator_or_model, frame_seconds)
    stream.push(_mono_16k(audio, sample_rate))
    return stream.finish()


def scan_file(
    separator_or_model,
    path: str | os.PathLike,
    frame_seconds: float = DEFAULT_FRAME_SECONDS,
    on_input=None,
) -> ScanResult:
    """:func:`scan` of a file of any length, decoded and resampled block by block (flat memory).

    ``on_input`` is called with each decoded block's length in input samples
    (a progress bar). The result equals :func:`scan` on the loaded file.
    """
    import soxr

    from omnisep.audio import AudioReader

    stream = ScanStream(separator_or_model, frame_seconds)
    reader = AudioReader(path)
    try:
        down = None
        if reader.sample_rate != SAMPLE_RATE:
            down = soxr.ResampleStream(reader.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="VHQ")
        for block in reader:
            mono = np.asarray(block, dtype=np.float32).mean(axis=0)
            stream.push(mono if down is None else down.resample_chunk(mono, last=False))
            if on_input is not None:
                on_input(block.shape[1])
        if down is not None:
            stream.push(down.resample_chunk(np.zeros(0, np.float32), last=True))
    finally:
        reader.close()
    return stream.finish()
