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

``target = "waveform"`` trains on what the evaluation measures: each source's
mask is applied to the mixture STFT as at inference (mixture phase, iSTFT) and
the loss is the negative *thresholded* SNR of the waveform (Wisdom et al.,
MixIT, 2020): ``10 log10(|s - s^|^2 + t|x|^2) - 10 log10(|s|^2 + t|x|^2)`` with
``t = 10^-3`` of the mixture's energy. A present source gets minus its SNR,
saturating 30 dB above the mixture; an absent one (``s = 0``) gets the energy
the query returns, down to 30 dB below the mixture, so silence is trained by
the same formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnisep.models import signal_path
from omnisep.models.signal_path import warped_magnitude

WEIGHT_RANGE = (1e-3, 10.0)
MASK_TARGETS = ("binary", "ratio")
LOSS_TARGETS = (*MASK_TARGETS, "waveform")
SNR_SATURATION_DB = 30.0  # the thresholded SNR's reach, relative to the mixture's energy


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


def thresholded_snr_loss(estimates: torch.Tensor, sources: torch.Tensor, mixture: torch.Tensor,
                         saturation_db: float = SNR_SATURATION_DB) -> torch.Tensor:
    """Per-source loss ``[B, N]`` from waveforms ``[B, N, T]`` and the mixture ``[B, T]``: minus the
    thresholded SNR in dB (see the module docstring); finite for silent sources and silent mixtures."""
    floor = 10 ** (-saturation_db / 10) * mixture.float().pow(2).sum(-1, keepdim=True) + 1e-8
    error = (sources.float() - estimates.float()).pow(2).sum(-1)
    power = sources.float().pow(2).sum(-1)
    return 10 * torch.log10(error + floor) - 10 * torch.log10(power + floor)


def negative_logits(query_logits: torch.Tensor, negative_logits: torch.Tensor, alpha) -> torch.Tensor:
    """The logit-mode negative query as inference applies it (``omnisep.queries``):
    ``(1 + a) L(q) - a L(q_neg)``, in float32; ``alpha`` a number or a tensor that broadcasts."""
    return (1 + alpha) * query_logits.float() - alpha * negative_logits.float()


def batch_loss(mixture: torch.Tensor, sources: torch.Tensor, target: str = "binary"):
    """``(network input [B, 1, H, W], losses_of)`` for a batch: ``losses_of(logits [B, N, H, W])`` gives the
    per-source loss ``[B, N]`` of the configured target, so training and validation share one definition.
    With mask targets, ``losses_of(logits, teacher_logits, share)`` distils: the target becomes
    ``(1 - share) * truth + share * sigmoid(teacher_logits)`` (BCE is linear in its target, so this is the
    same blend of the two losses)."""
    if target == "waveform":
        with torch.no_grad():
            spec = signal_path.analyse(mixture)
            mag_mix = signal_path.network_input(spec)

        def losses_of(logits: torch.Tensor) -> torch.Tensor:
            masked = signal_path.apply_masks(spec, torch.sigmoid(logits.float()))
            return thresholded_snr_loss(signal_path.synthesise(masked, mixture.shape[-1]), sources, mixture)

        return mag_mix, losses_of
    mag_mix, ground_truth, weight = separation_targets(mixture, sources, target)

    def losses_of(logits: torch.Tensor, teacher_logits: torch.Tensor | None = None, share: float = 0.0) -> torch.Tensor:
        truth = ground_truth
        if teacher_logits is not None and share > 0:
            truth = (1.0 - share) * ground_truth + share * torch.sigmoid(teacher_logits.float())
        return weighted_bce(logits, truth, weight)

    return mag_mix, losses_of
