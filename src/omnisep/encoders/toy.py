"""A tiny deterministic encoder for tests and examples: no weights, no downloads.

The same input always gives the same vector on every machine (numpy's PCG64
streams are stable by policy), and it keeps just enough structure for tests
to mean something: equal texts (up to case and spacing) coincide, images of
similar colours are close, and sounds with similar spectra are close.
"""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np
import torch
from PIL import Image

from omnisep.encoders.base import QueryEncoder

THUMBNAIL = 4  # 4 x 4 x RGB mean colours
HISTOGRAM_BINS = 4  # per channel: 64 joint colour bins
AUDIO_BANDS = 32
AUDIO_FFT = 512
PROJECTION_SEED = 20240601


def normalise_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(normalise_text(text).encode("utf-8")).digest()[:8], "little")


class ToyEncoder(QueryEncoder):
    name = "toy"
    version = "1"
    audio_sample_rate = 16000

    def __init__(self, dim: int = 64, batch_size: int = 64):
        self.dim = int(dim)
        self.batch_size = int(batch_size)
        rng = np.random.default_rng(PROJECTION_SEED)
        image_features = 3 * THUMBNAIL * THUMBNAIL + HISTOGRAM_BINS**3
        self._image_projection = rng.standard_normal((image_features, self.dim)).astype(np.float32)
        self._audio_projection = rng.standard_normal((AUDIO_BANDS + 1, self.dim)).astype(np.float32)
        frequencies = np.fft.rfftfreq(AUDIO_FFT, 1.0 / self.audio_sample_rate)
        edges = np.geomspace(50.0, self.audio_sample_rate / 2, AUDIO_BANDS + 1)
        # band membership of each FFT bin (bins below 50 Hz join the first band)
        self._band_of_bin = np.clip(np.searchsorted(edges, frequencies, side="right") - 1, 0, AUDIO_BANDS - 1)

    def weights_hash(self) -> str:
        return hashlib.sha256(f"omnisep-toy-encoder|{self.version}|dim={self.dim}".encode()).hexdigest()

    def _embed_text(self, texts: list[str]) -> torch.Tensor:
        rows = [np.random.default_rng(_seed_of(text)).standard_normal(self.dim) for text in texts]
        return torch.from_numpy(np.stack(rows).astype(np.float32))

    def image_features(self, image: np.ndarray) -> np.ndarray:
        thumbnail = np.asarray(
            Image.fromarray(image).resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR), dtype=np.float32
        ).reshape(-1) / 255.0
        quantised = (image.reshape(-1, 3).astype(np.int64) * HISTOGRAM_BINS) // 256
        joint = (quantised[:, 0] * HISTOGRAM_BINS + quantised[:, 1]) * HISTOGRAM_BINS + quantised[:, 2]
        histogram = np.bincount(joint, minlength=HISTOGRAM_BINS**3).astype(np.float32) / len(joint)
        return np.concatenate([thumbnail - 0.5, histogram])

    def _embed_image(self, images: list[np.ndarray]) -> torch.Tensor:
        features = np.stack([self.image_features(image) for image in images])
        return torch.from_numpy(features @ self._image_projection)

    def audio_features(self, clip: np.ndarray) -> np.ndarray:
        """Mean log band energy minus its mean (loudness does not matter), plus a
        constant feature so that silence still maps to a usable vector."""
        if len(clip) < AUDIO_FFT:
            clip = np.pad(clip, (0, AUDIO_FFT - len(clip)))
        hop = AUDIO_FFT // 2
        count = 1 + (len(clip) - AUDIO_FFT) // hop
        frames = np.lib.stride_tricks.sliding_window_view(clip, AUDIO_FFT)[::hop][:count]
        power = (np.abs(np.fft.rfft(frames * np.hanning(AUDIO_FFT), axis=-1)) ** 2).mean(axis=0)
        bands = np.bincount(self._band_of_bin, weights=power, minlength=AUDIO_BANDS)
        log_bands = np.log(bands + 1e-10)
        return np.append(log_bands - log_bands.mean(), 1.0).astype(np.float32)

    def _embed_audio(self, clips: list[np.ndarray]) -> torch.Tensor:
        features = np.stack([self.audio_features(clip) for clip in clips])
        return torch.from_numpy(features @ self._audio_projection)
