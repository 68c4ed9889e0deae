"""A sound tagger: which labels sound in a stretch of audio, heard by the bundled audio backbone.

Why it exists: the scan's own evidence is what the U-Net separates for each
label, checked by embedding that separated audio with the query encoder. Both
witnesses were trained on one sound at a time, and on the test mixtures the
scan names the second sound only about a third of the time, which is what
limits the automatic negative query. The tagger is trained on *mixtures*
(1 to 3 sounds, levels, rooms, noise and EQ drawn as the resident training
pipeline draws them, ``training/tagger.py``), one probability per label, so
it answers "is X in here" directly. It reads the aisfx CNN's features of
~2.3 s blocks (the same backbone as the audio query head), so it adds one
backbone pass per window to a scan, instead of one per label listened to.

A tagger is a safetensors file plus a JSON beside it (labels, widths, the
backbone's hash); it never depends on the Separate-Net, so any model whose
bank uses the same label names can use it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from omnisep import fileio
from omnisep.errors import OmniSepError, describe
from omnisep.spectral import SAMPLE_RATE

# How a tagger reads the aisfx CNN's last map ``[512, time, frequency]`` of one block:
# "embedding": the backbone's own embedding (mean over frequency, max over time; 512 numbers);
# "bands": that, then the same pooling in each quarter of the frequency axis (512 + 4 x 512). The
# embedding forgets where in frequency a feature fired, which is much of what tells a violin from a
# trombone in a mixture (scripts/probe_tagger_pooling.py).
POOLINGS = {"embedding": 512, "bands": 512 * 5}
FREQUENCY_BANDS = 4

TAGGER_FORMAT = "omnisep-tagger"
TAGGER_FORMAT_VERSION = 1
DEFAULT_TAGGER = Path(__file__).resolve().parent / "pretrained" / "tagger" / "tagger.safetensors"


class Tagger(nn.Module):
    """Backbone features of one block ``[..., feature_dim]`` -> one logit per label ``[..., N]``.

    The features are standardised with the training set's statistics (kept as
    buffers), then a one-hidden-layer MLP. A window's probability of a label is
    the largest of its blocks' (a sound heard in one block is in the window).
    """

    def __init__(self, labels: list[str], feature_dim: int = 512, hidden: int = 512, dropout: float = 0.2,
                 pooling: str = "embedding"):
        super().__init__()
        if pooling not in POOLINGS:
            raise OmniSepError(f"a tagger's pooling is one of {', '.join(POOLINGS)}, not {pooling!r}.")
        self.labels = list(labels)
        self.pooling = pooling
        self.feature_dim, self.hidden, self.dropout = int(feature_dim), int(hidden), float(dropout)
        self.register_buffer("mean", torch.zeros(self.feature_dim))
        self.register_buffer("std", torch.ones(self.feature_dim))
        self.net = nn.Sequential(
            nn.Linear(self.feature_dim, self.hidden),
            nn.ReLU(),
            nn.Dropout(self.dropout),
            nn.Linear(self.hidden, len(self.labels)),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std)

    def window_logits(self, blocks: torch.Tensor) -> torch.Tensor:
        """``[W, blocks, feature_dim]`` -> ``[W, N]``: the largest block logit per label."""
        return self.forward(blocks).amax(dim=-2)

    def config(self) -> dict:
        return {"labels": self.labels, "feature_dim": self.feature_dim, "hidden": self.hidden, "dropout": self.dropout,
                "pooling": self.pooling}


def pool_blocks(backbone: nn.Module, blocks: torch.Tensor, pooling: str = "embedding") -> torch.Tensor:
    """aisfx spectrogram blocks ``[B, frames, mels]`` -> ``[B, POOLINGS[pooling]]`` (see :data:`POOLINGS`)."""
    if pooling == "embedding":
        return backbone(blocks)
    if pooling != "bands":
        raise OmniSepError(f"a tagger's pooling is one of {', '.join(POOLINGS)}, not {pooling!r}.")
    feature_map = backbone.feature_map(blocks)  # [B, 512, time, frequency]
    pooled = [part.mean(dim=3).amax(dim=2) for part in (feature_map, *feature_map.chunk(FREQUENCY_BANDS, dim=3))]
    return torch.cat(pooled, dim=1)


def block_features(backbone: nn.Module, wave: np.ndarray, sample_rate: int = SAMPLE_RATE,
                   pooling: str = "embedding") -> torch.Tensor:
    """Mono audio ``[n]`` -> ``[blocks, POOLINGS[pooling]]`` aisfx features of its ~2.3 s blocks (peak-normalised,
    as the head sees)."""
    from omnisep.audio import resample
    from omnisep.encoders import backbones

    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if sample_rate != backbones.SFX_SAMPLE_RATE:
        wave = resample(wave, sample_rate, backbones.SFX_SAMPLE_RATE)
    blocks = backbones.sfx_blocks(backbones.sfx_spectrogram(wave))
    with torch.inference_mode():
        return pool_blocks(backbone, blocks, pooling)


def save_tagger(path: str | os.PathLike, tagger: Tagger, record: dict | None = None) -> Path:
    """Write ``path`` (safetensors) and ``path.json`` (config plus ``record``: what it was trained on and scored)."""
    from omnisep.encoders.backbones import SFX_SHA256

    path = Path(path)
    state = {key: value.detach().contiguous().cpu() for key, value in tagger.state_dict().items()}
    meta = {"format": TAGGER_FORMAT, "format_version": TAGGER_FORMAT_VERSION, "backbone": "aisfx-cnn",
            "backbone_sha256": SFX_SHA256, **tagger.config(), **(record or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_path(path) as temp:
        save_file(state, str(temp))
    fileio.write_json(path.with_suffix(".json"), meta, indent=2)
    return path


def load_tagger(path: str | os.PathLike = DEFAULT_TAGGER) -> Tagger:
    """A saved tagger, checked against its JSON and the backbone it was trained on."""
    from omnisep.encoders.backbones import SFX_SHA256

    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise OmniSepError(f"The tagger {describe(path)} needs both the file and its .json beside it.")
    try:
        meta = json.loads(meta_path.read_text())
        state = load_file(str(path))
    except Exception:
        raise OmniSepError(f"The tagger {describe(path)} cannot be read; it is damaged or not a tagger.") from None
    if meta.get("format") != TAGGER_FORMAT:
        raise OmniSepError(f"{describe(meta_path)} is not an omnisep tagger.")
    if meta.get("backbone_sha256") != SFX_SHA256:
        raise OmniSepError(f"The tagger {describe(path)} was trained on another audio backbone than this install's.")
    pooling = meta.get("pooling", "embedding")  # taggers written before poolings existed read the embedding
    if pooling not in POOLINGS:
        raise OmniSepError(f"The tagger {describe(path)} reads features this install does not make (pooling {pooling!r}).")
    tagger = Tagger(meta["labels"], meta["feature_dim"], meta["hidden"], meta.get("dropout", 0.0), pooling)
    try:
        tagger.load_state_dict(state, strict=True)
    except RuntimeError:
        raise OmniSepError(f"The tagger {describe(path)} does not match its .json (labels or widths).") from None
    return tagger.eval()
