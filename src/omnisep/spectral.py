"""STFT and the log-frequency warp of the Separate-Net (paper settings).

The U-Net works on a 256-bin log-frequency magnitude; masks are predicted
there and un-warped back to the 513 linear bins before they multiply the
mixture spectrogram. Both resamplings are bilinear ``grid_sample`` calls with
``align_corners=True`` so the first and last bins map onto each other exactly.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 256
WIN = 1024
N_FREQ = N_FFT // 2 + 1  # 513
N_WARP = 256
SEGMENT = 65535  # one training/evaluation item: 256 STFT frames
MAG_EPS = 1e-10  # added to magnitudes before the warp so that log() is finite

_WARP_BASE = 21.0


# The cached constants are made outside inference mode: a tensor created under
# torch.inference_mode() (as inference does) cannot enter a later autograd
# graph, so caching one would break training that follows inference.
@functools.lru_cache(maxsize=8)
def _window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode(False):
        return torch.hann_window(WIN, periodic=True, device=device, dtype=dtype)


def stft(wave: torch.Tensor) -> torch.Tensor:
    """Complex STFT ``[B, T] -> [B, 513, 1 + T // 256]``.

    Centred frames with zero padding at both ends, as the paper's code does
    (not torch's default reflection padding).
    """
    if wave.dim() != 2:
        raise ValueError(f"stft expects [B, T], got shape {tuple(wave.shape)}")
    return torch.stft(
        wave,
        n_fft=N_FFT,
        hop_length=HOP,
        win_length=WIN,
        window=_window(wave.device, wave.dtype),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )


def istft(spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """Inverse of :func:`stft`: ``[B, 513, F] -> [B, length]``.

    Without ``length`` the output has ``(F - 1) * 256`` samples, which is the
    paper's 65,280-sample evaluation length for one item.
    """
    if spec.dim() != 3 or spec.shape[1] != N_FREQ:
        raise ValueError(f"istft expects [B, {N_FREQ}, F], got shape {tuple(spec.shape)}")
    real_dtype = spec.real.dtype
    return torch.istft(
        spec,
        n_fft=N_FFT,
        hop_length=HOP,
        win_length=WIN,
        window=_window(spec.device, real_dtype),
        center=True,
        length=length,
    )


def warp_coordinates(n_out: int = N_WARP) -> torch.Tensor:
    """Normalised source coordinate in [-1, 1] of each warped bin (float64).

    Row ``i`` of the warped spectrogram samples the linear spectrogram at
    ``y = (21 ** ((t + 1) / 2) - 11) / 10`` with ``t = linspace(-1, 1)[i]``:
    dense sampling of low frequencies, sparse of high ones.
    """
    t = torch.linspace(-1.0, 1.0, n_out, dtype=torch.float64)
    y = (_WARP_BASE ** ((t + 1.0) / 2.0) - 11.0) / 10.0
    # The end points are -1 and 1 in exact arithmetic; clamping removes the
    # rounding that would otherwise leak a sliver of the zero padding in.
    return y.clamp(-1.0, 1.0)


def unwarp_coordinates(n_out: int = N_FREQ) -> torch.Tensor:
    """Normalised warped-axis coordinate of each linear bin (inverse of :func:`warp_coordinates`)."""
    t = torch.linspace(-1.0, 1.0, n_out, dtype=torch.float64)
    y = torch.log(10.0 * t + 11.0) / math.log(_WARP_BASE) * 2.0 - 1.0
    return y.clamp(-1.0, 1.0)


@functools.lru_cache(maxsize=32)
def _grid(kind: str, n_frames: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sampling grid ``[1, H_out, n_frames, 2]``; the time axis maps onto itself."""
    with torch.inference_mode(False):
        return _make_grid(kind, n_frames, device, dtype)


def _make_grid(kind: str, n_frames: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    ys = warp_coordinates() if kind == "warp" else unwarp_coordinates()
    xs = torch.linspace(-1.0, 1.0, n_frames, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([grid_x, grid_y], dim=-1).unsqueeze(0)
    return grid.to(device=device, dtype=dtype)


def _resample_frequency(x: torch.Tensor, kind: str, n_in: int) -> torch.Tensor:
    if x.dim() != 4 or x.shape[2] != n_in:
        raise ValueError(f"{kind} expects [B, C, {n_in}, F], got shape {tuple(x.shape)}")
    grid = _grid(kind, x.shape[3], x.device, x.dtype)
    grid = grid.expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def warp(mag: torch.Tensor) -> torch.Tensor:
    """Linear to log frequency: ``[B, C, 513, F] -> [B, C, 256, F]``."""
    return _resample_frequency(mag, "warp", N_FREQ)


def unwarp(x: torch.Tensor) -> torch.Tensor:
    """Log to linear frequency: ``[B, C, 256, F] -> [B, C, 513, F]``."""
    return _resample_frequency(x, "unwarp", N_WARP)
