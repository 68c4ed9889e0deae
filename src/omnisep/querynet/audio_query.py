"""Audio query examples from the real world: the conditions we measure and the preprocessing that helps.

Conditions (:func:`degrade`): a short excerpt (the loudest 0.5 / 1 / 2 s), a
synthetic room (exponentially decaying noise tail, RT60 0.7 s, wet/dry 1:1),
white noise at 10 / 0 dB SNR, and a level of -30 dBFS RMS.

:func:`prepare_example` is applied to a user's audio *query* (never to the
training cache, so the audio head's embeddings of clips stay what the
Separate-Net was trained on): it trims leading and trailing near-silence and
loops an example shorter than one aisfx block (2.3 s) to fill it, instead of
the zero padding the front end would add, so a short example is not mostly
silence. Its level does not matter: the aisfx front end peak-normalises.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

# The preparation lives with the encoders (the API applies it to every user's audio query); re-exported here.
from omnisep.encoders.examples import BLOCK_SECONDS, prepare_example, trim_silence  # noqa: F401

CONDITIONS = ("clean", "short-0.5s", "short-1s", "short-2s", "reverb", "noise-10dB", "noise-0dB", "level-30dB")


def loudest_window(wave: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """The ``seconds``-long excerpt with the most energy (what a user trims an example to)."""
    length = int(round(seconds * rate))
    if wave.size <= length:
        return wave
    cumulative = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    start = int(np.argmax(cumulative[length:] - cumulative[:-length]))  # windowed energy, O(n)
    return wave[start : start + length]


def degrade(wave: np.ndarray, rate: int, condition: str, seed: int = 0) -> np.ndarray:
    """One measured condition of a clean example (float32 mono)."""
    rng = np.random.default_rng(seed)
    wave = np.asarray(wave, dtype=np.float64)
    if condition == "clean":
        out = wave
    elif condition.startswith("short-"):
        out = loudest_window(wave, rate, float(condition[len("short-") : -1]))
    elif condition == "reverb":
        rt60 = 0.7
        t = np.arange(int(rt60 * rate)) / rate
        tail = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
        tail /= np.sqrt(np.sum(tail**2))
        wet = fftconvolve(wave, tail)[: wave.size]
        out = wave + wet * np.sqrt(np.sum(wave**2) / max(np.sum(wet**2), 1e-12))
    elif condition.startswith("noise-"):
        snr = float(condition[len("noise-") : -2])
        power = np.mean(wave**2) + 1e-12
        out = wave + rng.standard_normal(wave.size) * np.sqrt(power / 10 ** (snr / 10))
    elif condition.startswith("level-"):
        target = -float(condition[len("level-") : -2])
        out = wave * 10 ** (target / 20) / max(np.sqrt(np.mean(wave**2)), 1e-9)
    else:
        raise ValueError(f"unknown condition {condition!r}")
    peak = np.max(np.abs(out)) if out.size else 0.0
    if peak > 1.0:
        out = out / peak
    return out.astype(np.float32)
