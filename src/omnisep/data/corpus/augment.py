"""Signal helpers shared by every source family: decoding, trimming, timbre augmentation, levels.

Augmentation exists so that the separator learns the sound class rather than
one sample set or one recording chain: random EQ, light room reverb and a
random loudness are applied to every clip, whatever its source.
"""

from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

from omnisep.data.corpus import SAMPLE_RATE
from omnisep.errors import OmniSepError


def decode(data: bytes | str | os.PathLike, name: str = "") -> np.ndarray:
    """Any wav/ogg/flac/mp3 (file or bytes) as float32 mono at 16 kHz."""
    label = name or ("<bytes>" if isinstance(data, bytes) else os.fspath(data))
    source = io.BytesIO(data) if isinstance(data, bytes) else os.fspath(data)
    try:
        audio, rate = sf.read(source, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        audio, rate = _decode_with_av(data, label)
    if audio.size == 0:
        raise OmniSepError(f"'{label}' holds no audio samples.")
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="VHQ")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _decode_with_av(data, label: str) -> tuple[np.ndarray, int]:
    import av

    source = io.BytesIO(data) if isinstance(data, bytes) else os.fspath(data)
    try:
        with av.open(source) as container:
            stream = container.streams.audio[0]
            frames = [frame.to_ndarray().astype(np.float32) for frame in container.decode(stream)]
            rate = stream.rate
    except (av.error.FFmpegError, IndexError) as exc:
        raise OmniSepError(f"'{label}' could not be decoded as audio ({exc}).") from exc
    if not frames:
        raise OmniSepError(f"'{label}' holds no audio frames.")
    # Planar frames are [channels, n]; packed ones are [1, n * channels].
    channels = len(stream.layout.channels)
    parts = [f if f.shape[0] == channels else f.reshape(-1, channels).T for f in frames]
    audio = np.concatenate(parts, axis=1).mean(axis=0)
    if np.issubdtype(frames[0].dtype, np.integer):
        audio = audio / 32768.0
    return audio, rate


def frame_rms_db(audio: np.ndarray, frame: int = 400) -> np.ndarray:
    """Level of each 25 ms frame in dB (full scale = 0 dB)."""
    usable = audio[: len(audio) // frame * frame].reshape(-1, frame) if len(audio) >= frame else audio[None, :]
    return 10 * np.log10(np.mean(usable.astype(np.float64) ** 2, axis=1) + 1e-12)


def trim_silence(audio: np.ndarray, below_peak_db: float = 45.0, frame: int = 400) -> np.ndarray:
    """Cut leading/trailing frames more than `below_peak_db` under the loudest frame."""
    levels = frame_rms_db(audio, frame)
    loud = np.flatnonzero(levels > levels.max() - below_peak_db)
    if loud.size == 0:
        return audio
    return audio[loud[0] * frame : min(len(audio), (loud[-1] + 1) * frame)]


def active_fraction(audio: np.ndarray, below_peak_db: float = 35.0, floor_db: float = -65.0) -> float:
    """Share of frames that carry sound: used to reject clips that are mostly silence."""
    levels = frame_rms_db(audio)
    threshold = max(levels.max() - below_peak_db, floor_db)
    return float(np.mean(levels > threshold))


def fade(audio: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    """Short raised-cosine fades so that cut points do not click."""
    n = min(int(seconds * SAMPLE_RATE), len(audio) // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n, dtype=np.float32))
        audio = audio.copy()
        audio[:n] *= ramp
        audio[-n:] *= ramp[::-1]
    return audio


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play faster (factor > 1: higher and shorter) by resampling: a cheap pitch/size variation."""
    if abs(factor - 1.0) < 1e-3:
        return audio
    return soxr.resample(audio, SAMPLE_RATE * factor, SAMPLE_RATE, quality="HQ").astype(np.float32)


def random_eq(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One or two random filters: low-pass, high-pass and/or a peaking band."""
    out = audio.astype(np.float64)
    if rng.random() < 0.5:
        cutoff = rng.uniform(2500, 7500)
        out = signal.sosfilt(signal.butter(2, cutoff, "lowpass", fs=SAMPLE_RATE, output="sos"), out)
    if rng.random() < 0.5:
        cutoff = rng.uniform(40, 250)
        out = signal.sosfilt(signal.butter(2, cutoff, "highpass", fs=SAMPLE_RATE, output="sos"), out)
    if rng.random() < 0.6:
        out = _peaking(out, rng.uniform(150, 5000), rng.uniform(-8, 8), rng.uniform(0.5, 2.0))
    return out.astype(np.float32)


def _peaking(audio: np.ndarray, freq: float, gain_db: float, q: float) -> np.ndarray:
    """RBJ audio-EQ-cookbook peaking filter."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / SAMPLE_RATE
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a])
    return signal.lfilter(b / den[0], den / den[0], audio)


def room_reverb(audio: np.ndarray, rng: np.random.Generator, rt60: float, wet: float) -> np.ndarray:
    """Convolve with exponentially decaying noise (a plain synthetic room), mixed in at `wet`."""
    n = max(int(rt60 * SAMPLE_RATE), 16)
    t = np.arange(n) / SAMPLE_RATE
    impulse = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    impulse = signal.sosfilt(signal.butter(1, rng.uniform(3000, 7000), "lowpass", fs=SAMPLE_RATE, output="sos"), impulse)
    impulse /= np.sqrt(np.sum(impulse**2)) + 1e-12
    tail = signal.fftconvolve(audio.astype(np.float64), impulse)[: len(audio)]
    dry_rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-12
    tail *= dry_rms / (np.sqrt(np.mean(tail**2)) + 1e-12)
    return ((1 - wet) * audio + wet * tail).astype(np.float32)


def set_level(audio: np.ndarray, rms_db: float, peak: float = 0.99) -> np.ndarray:
    """Scale to an RMS level in dBFS, then lower it further if the peak would pass `peak`."""
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    if rms < 1e-9:
        return audio
    out = audio * (10 ** (rms_db / 20) / rms)
    top = float(np.max(np.abs(out)))
    if top > peak:
        out *= peak / top
    return out.astype(np.float32)


def augment(audio: np.ndarray, rng: np.random.Generator, reverb_probability: float = 0.5) -> np.ndarray:
    """The per-clip timbre and level augmentation applied to every family."""
    out = random_eq(audio, rng)
    if rng.random() < reverb_probability:
        out = room_reverb(out, rng, rt60=rng.uniform(0.15, 0.8), wet=rng.uniform(0.05, 0.3))
    return set_level(out, rms_db=rng.uniform(-30, -16))


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad or cut to exactly `length` samples."""
    if len(audio) >= length:
        return audio[:length]
    return np.pad(audio, (0, length - len(audio)))
