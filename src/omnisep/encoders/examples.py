"""A user's audio query example, made ready for the bundled encoder's audio backbone.

The aisfx backbone embeds blocks of 100 frames (2.3 s) and zero-pads a
shorter clip, so a 0.5 s example is mostly silence to it; leading and
trailing near-silence dilute any example the same way. :func:`prepare_example`
trims that silence and loops a short example to one full block. It is for
users' examples only (``QueryEncoder.embed_examples``): the training cache and
the encoder's other uses (the scan's verification, the residual of an
automatic negative) embed audio as it is, so the audio head's embeddings stay
what the Separate-Net was trained on. Measured per condition in
docs/results/querynet-v2/ (``omnisep.querynet.audio_query``).
"""

from __future__ import annotations

import numpy as np

BLOCK_SECONDS = 100 * 1024 / 44100  # one aisfx block (100 frames, hop 1024 at 44.1 kHz)


def trim_silence(wave: np.ndarray, rate: int, floor_db: float = 40.0, frame_seconds: float = 0.02) -> np.ndarray:
    """Drop leading and trailing frames more than ``floor_db`` below the loudest frame."""
    frame = max(1, int(frame_seconds * rate))
    count = wave.size // frame
    if count < 2:
        return wave
    energy = (wave[: count * frame].astype(np.float64).reshape(count, frame) ** 2).mean(axis=1)
    loud = np.flatnonzero(energy >= energy.max() * 10 ** (-floor_db / 10))
    return wave[loud[0] * frame : (loud[-1] + 1) * frame]


def prepare_example(wave: np.ndarray, rate: int) -> np.ndarray:
    """Trim near-silence, then loop a short example to one full aisfx block."""
    wave = trim_silence(np.asarray(wave, dtype=np.float32), rate)
    block = int(np.ceil(BLOCK_SECONDS * rate))
    if 0 < wave.size < block:
        wave = np.tile(wave, int(np.ceil(block / wave.size)))[:block]
    return wave
