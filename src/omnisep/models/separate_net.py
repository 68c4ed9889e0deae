"""The Separate-Net: a query-free U-Net whose k feature maps queries weight (paper eq. 2).

Because the U-Net never sees the query, one U-Net pass serves any number of
queries: each query only picks a sigmoid-weighted combination of the k maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omnisep import spectral
from omnisep.errors import OmniSepError
from omnisep.models.base import MaskNetwork, NetworkConfig
from omnisep.models.unet import BN_WEIGHT_STD, UNet

LINEAR_INIT_STD = 1e-4


@dataclass(frozen=True)
class SeparateNetConfig(NetworkConfig):
    ngf: int = 64
    depth: int = 7
    k: int = 32
    emb_dim: int = 1024
    binary_mask: bool = False
    # True: the paper's bilinear up-sampling. Our own models use False, which
    # makes chunked whole-file inference equal the one-piece result.
    align_corners: bool = True

    def __post_init__(self):
        self.check_fields()
        if not 2 <= self.depth <= 8:
            # 256 warped bins halve at most 8 times.
            raise OmniSepError(f"model config: 'depth' must be between 2 and 8, got {self.depth}.")

    @property
    def time_multiple(self) -> int:
        return 2**self.depth


class SeparateNet(MaskNetwork):
    """The paper's network, kind ``paper``: a query-free U-Net whose k maps the query weights."""

    kind = "paper"
    config_class = SeparateNetConfig

    def __init__(self, config: SeparateNetConfig | None = None):
        super().__init__(config or SeparateNetConfig())
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
        return self.config.time_multiple

    @property
    def context_frames(self) -> int:
        # One grid step: enough for a shift-equivariant U-Net of depth 7 (measured
        # equal to one-piece output to 1e-5, see omnisep.apply).
        return self.config.time_multiple

    def features(self, mag_warped: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 256, F] -> [B, k, 256, F]``; the input is ``warp(|X| + 1e-10)``.

        The clamp only guards against a caller who forgot the 1e-10: for
        valid input it changes nothing measurable.
        """
        x = torch.log(mag_warped.clamp_min(spectral.MAG_EPS))
        return self.unet(self.input_norm(x))

    def prepare(self, mag_warped: torch.Tensor) -> torch.Tensor:
        return self.features(mag_warped)

    def query_weights(self, queries: torch.Tensor) -> torch.Tensor:
        """``[B, Q, D] -> [B, Q, k]`` channel weights in (0, 1)."""
        if queries.shape[-1] != self.config.emb_dim:
            self.check_queries(queries)
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
