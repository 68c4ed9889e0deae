"""Targets and the weighted binary cross-entropy of the paper (eq. 3).

Everything is computed on the batch, in torch, on the network's own input
(:func:`omnisep.models.signal_path.warped_magnitude`):
the ground-truth mask is ``mag_source > 0.5 * mag_mix`` and each bin's weight
is ``clamp(log1p(mag_mix), 1e-3, 10)``, so loud bins count more and silent
ones barely at all.

``target = "ratio"`` (``[loss] target`` in a config) replaces the binary mask
by the magnitude ratio ``min(|S| / |X|, 1)``: the soft mask the network is
applied as at inference, so a sigmoid output that matches it is closer to the
mask that scores best in SDR than the probability that a source dominates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnisep.models.signal_path import warped_magnitude

WEIGHT_RANGE = (1e-3, 10.0)
MASK_TARGETS = ("binary", "ratio")


@torch.no_grad()
def separation_targets(mixture: torch.Tensor, sources: torch.Tensor, target: str = "binary"):
    """Mixture input, ground-truth masks (binary, or ratio) and loss weights for a batch.

    ``mixture [B, T]``, ``sources [B, N, T]`` -> ``mag_mix [B, 1, H, W]``,
    ``ground_truth [B, N, H, W]`` (float in [0, 1]), ``weight [B, 1, H, W]``.
    """
    if target not in MASK_TARGETS:
        raise ValueError(f"mask target must be one of {MASK_TARGETS}, got {target!r}")
    mag_mix = warped_magnitude(mixture.unsqueeze(1))
    mag_sources = warped_magnitude(sources)
    if target == "binary":
        ground_truth = (mag_sources > 0.5 * mag_mix).float()
    else:
        ground_truth = (mag_sources / mag_mix).clamp(max=1.0)
    weight = torch.log1p(mag_mix).clamp(*WEIGHT_RANGE)
    return mag_mix, ground_truth, weight


def weighted_bce(logits: torch.Tensor, ground_truth: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-source loss ``[B, N]``: weighted BCE averaged over the bins.

    The paper's mean over all elements, averaged over the N sources, equals
    ``weighted_bce(...).mean()``; keeping the per-source values lets validation
    average each query modality over only the sources that have it. Computed
    from logits (not sigmoid outputs) for numerical safety, in float32.
    """
    losses = F.binary_cross_entropy_with_logits(
        logits.float(), ground_truth, weight=weight.expand_as(ground_truth), reduction="none"
    )
    return losses.mean(dim=(-2, -1))
