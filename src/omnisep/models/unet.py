"""The Separate-Net's U-Net (Sound of Pixels / CLIPSep / OmniSep layout).

Each level halves both spatial axes with a 4x4 stride-2 convolution and
doubles them back with bilinear up-sampling + a 3x3 convolution (which avoids
the checkerboard artefacts of transposed convolutions). Skips concatenate.
The skip carries the input *after* the level's LeakyReLU: the paper's code
applies that activation in place, so the tensor it concatenates has already
been activated. We do the same, explicitly.
Inputs must have both spatial sizes divisible by ``2 ** depth``; the callers
pad the time axis (see ``SeparateNet.separate`` and ``omnisep.apply``).
"""

from __future__ import annotations

import torch
from torch import nn

CONV_INIT_STD = 1e-3
BN_WEIGHT_STD = 0.02


def init_like_paper(modules) -> None:
    """The paper's initialisation of convolutions (N(0, 1e-3)) and batch norms (weight N(1, 0.02), bias 0).

    Biases of convolutions keep PyTorch's default, as in the paper's code.
    """
    for module in modules:
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, CONV_INIT_STD)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, BN_WEIGHT_STD)
            nn.init.zeros_(module.bias)


def level_channels(ngf: int, depth: int) -> list[int]:
    """Feature channels after each down level: ngf, 2 ngf, 4 ngf, then 8 ngf."""
    return [ngf * 2 ** min(level, 3) for level in range(depth)]


class _Level(nn.Module):
    """One resolution level: down path, the deeper levels, up path, skip."""

    def __init__(
        self, outer: int, inner: int, out: int, child: nn.Module | None, outermost: bool, align_corners: bool = True
    ):
        super().__init__()
        innermost = child is None
        self.activation = nn.Identity() if outermost else nn.LeakyReLU(0.2)
        down: list[nn.Module] = [nn.Conv2d(outer, inner, kernel_size=4, stride=2, padding=1, bias=False)]
        if not outermost and not innermost:
            down.append(nn.BatchNorm2d(inner))
        self.down = nn.Sequential(*down)
        self.child = child
        up_in = inner if innermost else inner * 2
        up: list[nn.Module] = [
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align_corners),
            nn.Conv2d(up_in, out, kernel_size=3, padding=1, bias=outermost),
        ]
        if not outermost:
            up.append(nn.BatchNorm2d(out))
        self.up = nn.Sequential(*up)
        self.outermost = outermost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(x)
        y = self.down(x)
        if self.child is not None:
            y = self.child(y)
        y = self.up(y)
        return y if self.outermost else torch.cat([x, y], dim=1)


class UNet(nn.Module):
    """``[B, 1, H, W] -> [B, out_channels, H, W]`` with H, W multiples of ``2 ** depth``."""

    def __init__(
        self, ngf: int = 64, depth: int = 7, out_channels: int = 32, in_channels: int = 1, align_corners: bool = True
    ):
        """``align_corners=True`` is the paper's up-sampling; it is not shift-equivariant, so
        chunked inference only approximates one-piece inference (~47 dB). ``False`` makes the
        U-Net shift-equivariant on its ``2 ** depth`` grid: chunked equals one-piece exactly."""
        super().__init__()
        if depth < 2:
            raise ValueError(f"UNet depth must be at least 2, got {depth}")
        self.depth = depth
        channels = level_channels(ngf, depth)
        level: nn.Module | None = None
        for index in range(depth - 1, 0, -1):
            level = _Level(channels[index - 1], channels[index], channels[index - 1], level, False, align_corners)
        self.body = _Level(in_channels, channels[0], out_channels, level, True, align_corners)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's initialisation: conv N(0, 1e-3), BN weight N(1, 0.02), BN bias 0.

        The last convolution's bias keeps PyTorch's default, as in the paper's code.
        """
        init_like_paper(self.modules())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = 2**self.depth
        if x.dim() != 4 or x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(
                f"UNet of depth {self.depth} needs [B, C, H, W] with H and W multiples of {multiple}, "
                f"got shape {tuple(x.shape)}"
            )
        return self.body(x)
