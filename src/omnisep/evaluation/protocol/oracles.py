"""Oracle masks: the scale the model's estimates are read against."""

from __future__ import annotations

import torch


def oracle_estimates(target: torch.Tensor, interferer: torch.Tensor, mixture: torch.Tensor, length: int) -> torch.Tensor:
    """Ideal binary and ratio masks on the sources' STFT, through the model's masked iSTFT: ``[2, length]``."""
    from omnisep import spectral

    spec = spectral.stft(torch.stack([target, interferer, mixture]).double())
    target_mag, interferer_mag, mixture_mag = spec.abs()
    ibm = (target_mag > 0.5 * mixture_mag).to(spec.real.dtype)
    irm = target_mag / (target_mag + interferer_mag).clamp_min(1e-12)
    masked = torch.stack([ibm, irm]) * spec[2]
    return spectral.istft(masked, length).float()
