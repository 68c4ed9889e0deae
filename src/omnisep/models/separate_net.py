"""The Separate-Net: a query-free U-Net whose k feature maps queries weight (paper eq. 2).

Because the U-Net never sees the query, one U-Net pass serves any number of
queries: each query only picks a sigmoid-weighted combination of the k maps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from omnisep import spectral
from omnisep.errors import OmniSepError
from omnisep.models.unet import BN_WEIGHT_STD, UNet

LINEAR_INIT_STD = 1e-4


@dataclass(frozen=True)
class SeparateNetConfig:
    ngf: int = 64
    depth: int = 7
    k: int = 32
    emb_dim: int = 1024
    binary_mask: bool = False
    # True: the paper's bilinear up-sampling. Our own models use False, which
    # makes chunked whole-file inference equal the one-piece result.
    align_corners: bool = True

    def __post_init__(self):
        for name in ("ngf", "depth", "k", "emb_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OmniSepError(f"model config: '{name}' must be a positive integer, got {value!r}.")
        if not 2 <= self.depth <= 8:
            # 256 warped bins halve at most 8 times.
            raise OmniSepError(f"model config: 'depth' must be between 2 and 8, got {self.depth}.")
        for name in ("binary_mask", "align_corners"):
            if not isinstance(getattr(self, name), bool):
                raise OmniSepError(f"model config: '{name}' must be true or false, got {getattr(self, name)!r}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SeparateNetConfig":
        if not isinstance(values, dict):
            raise OmniSepError(f"model config: expected a mapping, got {type(values).__name__}.")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise OmniSepError(
                f"model config: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys are {', '.join(sorted(known))}."
            )
        return cls(**values)


class SeparateNet(nn.Module):
    def __init__(self, config: SeparateNetConfig | None = None):
        super().__init__()
        self.config = config or SeparateNetConfig()
        c = self.config
        self.input_norm = nn.BatchNorm2d(1)
        self.unet = UNet(ngf=c.ngf, depth=c.depth, out_channels=c.k, align_corners=c.align_corners)
        self.query_proj = nn.Linear(c.emb_dim, c.k)
        self.scale = nn.Parameter(torch.ones(c.k))
        self.bias = nn.Parameter(torch.zeros(1))
        nn.init.normal_(self.input_norm.weight, 1.0, BN_WEIGHT_STD)
        nn.init.zeros_(self.input_norm.bias)
        nn.init.normal_(self.query_proj.weight, 0.0, LINEAR_INIT_STD)

    @property
    def time_multiple(self) -> int:
        """The number of STFT frames given to :meth:`features` must be a multiple of this."""
        return 2**self.config.depth

    def features(self, mag_warped: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 256, F] -> [B, k, 256, F]``; the input is ``warp(|X| + 1e-10)``.

        The clamp only guards against a caller who forgot the 1e-10: for
        valid input it changes nothing measurable.
        """
        x = torch.log(mag_warped.clamp_min(spectral.MAG_EPS))
        return self.unet(self.input_norm(x))

    def query_weights(self, queries: torch.Tensor) -> torch.Tensor:
        """``[B, Q, D] -> [B, Q, k]`` channel weights in (0, 1)."""
        if queries.shape[-1] != self.config.emb_dim:
            raise OmniSepError(
                f"query embeddings have {queries.shape[-1]} dimensions but the model expects {self.config.emb_dim}."
            )
        return torch.sigmoid(self.query_proj(queries))

    def mask_logits(self, features: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Paper eq. 2: ``sum_c sigmoid(W q)_c * scale_c * F_c + bias`` -> ``[B, Q, H, W]``."""
        if queries.dim() != 3 or features.dim() != 4 or queries.shape[0] != features.shape[0]:
            raise ValueError(
                f"mask_logits expects features [B, k, H, W] and queries [B, Q, D], "
                f"got {tuple(features.shape)} and {tuple(queries.shape)}"
            )
        weights = self.query_weights(queries) * self.scale
        return torch.einsum("bqc,bchw->bqhw", weights, features) + self.bias

    def forward(self, mag_warped: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        return self.mask_logits(self.features(mag_warped), queries)

    def masks(self, logits: torch.Tensor, binary: bool | None = None) -> torch.Tensor:
        """Soft masks (sigmoid), or 0/1 masks thresholded at 0.5 when binary."""
        binary = self.config.binary_mask if binary is None else binary
        return (logits > 0).to(logits.dtype) if binary else torch.sigmoid(logits)

    def separate(
        self, wave: torch.Tensor, queries: torch.Tensor, length: int | None = None, binary: bool | None = None
    ) -> torch.Tensor:
        """Whole signal path for one chunk: ``wave [B, T]``, ``queries [B, Q, D]`` -> ``[B, Q, length]``.

        ``length`` defaults to ``T``. When the frame count is not a multiple
        of :attr:`time_multiple`, the warped magnitude is padded with silent
        frames (the 1e-10 floor) and the masks cropped back, so real frames
        keep their values. Call ``eval()`` first for inference: in training
        mode BatchNorm uses the batch statistics.
        """
        spec = spectral.stft(wave)
        mag_warped = spectral.warp(spec.abs().unsqueeze(1) + spectral.MAG_EPS)
        n_frames = mag_warped.shape[-1]
        pad = -n_frames % self.time_multiple
        if pad:
            mag_warped = F.pad(mag_warped, (0, pad), value=spectral.MAG_EPS)
        logits = self(mag_warped, queries)[..., :n_frames]
        mask = spectral.unwarp(self.masks(logits, binary))
        # mask * X keeps the mixture phase and scales its linear magnitude.
        estimate = mask * spec.unsqueeze(1)
        batch, n_queries = estimate.shape[:2]
        length = wave.shape[-1] if length is None else length
        out = spectral.istft(estimate.reshape(batch * n_queries, *estimate.shape[2:]), length)
        return out.reshape(batch, n_queries, -1).clamp(-1.0, 1.0)
