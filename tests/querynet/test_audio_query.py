"""Audio query conditions and the example preparation."""

from __future__ import annotations

import numpy as np
import pytest

from omnisep.querynet.audio_query import BLOCK_SECONDS, CONDITIONS, degrade, loudest_window, prepare_example, trim_silence

RATE = 8000


def _clip(seconds=3.0):
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) * (t > 1.0) * (t < 2.0)
    return wave.astype(np.float32)


def test_conditions():
    clip = _clip()
    assert np.array_equal(degrade(clip, RATE, "clean"), clip)
    short = degrade(clip, RATE, "short-0.5s")
    assert short.size == RATE // 2 and np.abs(short).max() > 0.2  # the loud part is kept
    level = degrade(clip, RATE, "level-30dB")
    assert 20 * np.log10(np.sqrt(np.mean(level.astype(np.float64) ** 2))) == pytest.approx(-30, abs=0.01)
    noisy = degrade(clip, RATE, "noise-0dB", seed=1)
    noise = noisy.astype(np.float64) - clip
    assert 10 * np.log10(np.mean(clip.astype(np.float64) ** 2) / np.mean(noise**2)) == pytest.approx(0, abs=0.3)
    wet = degrade(clip, RATE, "reverb")
    assert wet.size == clip.size and np.abs(wet[int(2.1 * RATE) :]).max() > 0.01  # a tail after the tone stops
    assert all(degrade(clip, RATE, c).dtype == np.float32 for c in CONDITIONS)
    with pytest.raises(ValueError):
        degrade(clip, RATE, "underwater")


def test_prepare_trims_silence_and_loops_short_examples():
    clip = _clip()
    trimmed = trim_silence(clip, RATE)
    assert abs(trimmed.size - RATE) <= 0.05 * RATE
    prepared = prepare_example(loudest_window(clip, RATE, 0.5), RATE)
    assert prepared.size == int(np.ceil(BLOCK_SECONDS * RATE))
    assert np.abs(prepared[-RATE // 4 :]).max() > 0.2  # looped, not zero-padded
    long = np.random.default_rng(0).standard_normal(4 * RATE).astype(np.float32)
    assert prepare_example(long, RATE).size == long.size
