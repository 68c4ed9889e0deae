"""The one signal path: wave -> |STFT| -> log-frequency warp -> network -> masks -> un-warp -> x mixture STFT -> iSTFT.

Whole-file and streamed inference (:mod:`omnisep.apply`), evaluation and the
training targets all go through these functions, so what is trained, what
is scored and what users get are the same computation.

Outputs are not clipped (the paper's code clips to [-1, 1]): keeping them
linear is what makes ``residual = mixture - target`` exact, and evaluation
scores exactly what ``omnisep separate`` writes. File writers warn when an
integer format has to clip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnisep import spectral
from omnisep.models.base import PAPER_LAYOUT, MaskNetwork
from omnisep.queries import combine_logits

# Queries masked and inverted at a time, so memory does not grow with their number. A film
# network's decoder holds full-resolution activations per query: for 40 queries on one 23 s
# chunk (v2, one thread), 16 at a time peaked at +1.9 GB, 4 at +0.6 GB, and 4 was no slower.
QUERY_GROUP = 4


def check_layout(net: MaskNetwork) -> None:
    if net.layout != PAPER_LAYOUT:
        raise ValueError(f"the signal path implements {PAPER_LAYOUT}, the network needs {net.layout}")


def analyse(wave: torch.Tensor) -> torch.Tensor:
    """Complex STFT ``[B, T] -> [B, 513, 1 + T // 256]`` (centred, zero padded)."""
    return spectral.stft(wave)


def network_input(spec: torch.Tensor) -> torch.Tensor:
    """``[B, 513, F]`` complex -> ``warp(|X| + 1e-10)`` ``[B, 1, 256, F]``."""
    return spectral.warp(spec.abs().unsqueeze(1) + spectral.MAG_EPS)


def warped_magnitude(waves: torch.Tensor) -> torch.Tensor:
    """``[B, C, T] -> [B, C, 256, F]``: the network input of each signal (training targets use it too)."""
    batch, channels, samples = waves.shape
    spec = analyse(waves.reshape(batch * channels, samples))
    mag = network_input(spec)
    return mag.reshape(batch, channels, *mag.shape[-2:])


def pad_frames(mag_warped: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the frame axis to a multiple with silent frames (the 1e-10 floor), as the network needs."""
    pad = -mag_warped.shape[-1] % multiple
    return F.pad(mag_warped, (0, pad), value=spectral.MAG_EPS) if pad else mag_warped


def apply_masks(spec: torch.Tensor, masks_warped: torch.Tensor) -> torch.Tensor:
    """Un-warp masks ``[B, Q, 256, F]`` and scale the mixture spectrogram ``[B, 513, F]`` -> ``[B, Q, 513, F]``.

    Keeps the mixture phase; real x complex is done on real pairs, so no
    complex copy of the masks is made.
    """
    masks = spectral.unwarp(masks_warped)
    return torch.view_as_complex(torch.view_as_real(spec).unsqueeze(1) * masks.unsqueeze(-1))


def synthesise(masked: torch.Tensor, length: int) -> torch.Tensor:
    """iSTFT of ``[B, Q, 513, F]`` -> ``[B, Q, length]``."""
    batch, n_queries = masked.shape[:2]
    out = spectral.istft(masked.reshape(batch * n_queries, *masked.shape[2:]), length)
    return out.reshape(batch, n_queries, -1)


def separate_spectrogram(
    net: MaskNetwork, spec: torch.Tensor, queries: torch.Tensor, length: int, binary: bool | None = None,
    combine: torch.Tensor | None = None, second_look: float | None = None,
) -> torch.Tensor:
    """Mixture STFT ``[B, 513, F]`` and queries ``[B, R, D]`` -> estimates ``[B, Q, length]``.

    The frame axis is padded to the network's multiple with silent frames
    and the logits cropped back, so real frames keep their values. The
    query-independent half of the network runs once for all queries.
    ``combine`` ``[Q, R]`` makes each output's logits a weighted sum of the
    rows' (see :class:`omnisep.queries.QueryRows`); without it ``Q = R``.
    ``second_look`` (dB): see :func:`look_again`.
    """
    check_layout(net)
    prepared = net.prepare(pad_frames(network_input(spec), net.time_multiple))
    return separate_prepared(net, spec, prepared, queries, length, binary, combine, second_look)


def separate_prepared(
    net: MaskNetwork, spec: torch.Tensor, prepared, queries: torch.Tensor, length: int, binary: bool | None = None,
    combine: torch.Tensor | None = None, second_look: float | None = None,
) -> torch.Tensor:
    """:func:`separate_spectrogram` from the network's query-independent half, already run on ``spec``
    (``net.prepare`` of its padded input): for callers that ask one mixture many batches of queries."""
    n_frames = spec.shape[-1]
    if combine is not None:
        rows = torch.cat([net.mask_logits(prepared, queries[:, r0 : r0 + QUERY_GROUP])[..., :n_frames]
                          for r0 in range(0, queries.shape[1], QUERY_GROUP)], dim=1)
        logits_of = combine_logits(combine, rows)
    outputs = []
    for q0 in range(0, queries.shape[1] if combine is None else combine.shape[0], QUERY_GROUP):
        if combine is None:
            logits = net.mask_logits(prepared, queries[:, q0 : q0 + QUERY_GROUP])[..., :n_frames]
        else:
            logits = logits_of[:, q0 : q0 + QUERY_GROUP]
        masks = net.masks(logits, binary)
        masked = apply_masks(spec, masks)
        if second_look is not None:
            masked = look_again(net, spec, masked, masks, queries, combine, q0, length, binary, second_look)
        outputs.append(synthesise(masked, length).float())
    return torch.cat(outputs, dim=1)


def look_again(net: MaskNetwork, spec: torch.Tensor, masked: torch.Tensor, masks: torch.Tensor, queries: torch.Tensor,
               combine: torch.Tensor | None, q0: int, length: int, binary: bool | None, below_db: float) -> torch.Tensor:
    """The second look: an output that holds less than ``below_db`` of the mixture's energy (the query found
    little of its sound here) is separated once more from itself, with the same query, and its mask becomes
    the product of the two passes' masks, applied to the mixture.

    Why: a query whose sound is absent gets back a quiet remainder of other sounds; asked again on that
    remainder, the network finds even less of its sound in it, so an absent sound returns near-silence.
    A query whose sound is present returns more than the gate and is left exactly as it was. ``masked``
    ``[B, G, 513, F]`` are outputs ``q0 .. q0 + G`` of ``spec`` ``[B, 513, F]`` under ``masks``; energies
    are the spectrograms' (Parseval), per batch element (per channel and chunk)."""
    mixture_energy = spec.abs().square().sum(dim=(-2, -1))  # [B]
    energy = masked.abs().square().sum(dim=(-2, -1))  # [B, G]
    gate = mixture_energy[:, None] * 10.0 ** (below_db / 10.0)
    quiet = ((energy < gate) & (mixture_energy[:, None] > 0)).nonzero().tolist()
    if not quiet:
        return masked
    masked = masked.clone()
    n_frames = spec.shape[-1]
    for b, g in quiet:
        q = q0 + g
        again = analyse(synthesise(masked[b : b + 1, g : g + 1], length)[:, 0])[..., :n_frames]
        if again.shape[-1] < n_frames:
            again = F.pad(again, (0, n_frames - again.shape[-1]))
        prepared = net.prepare(pad_frames(network_input(again), net.time_multiple))
        if combine is None:
            logits = net.mask_logits(prepared, queries[b : b + 1, q : q + 1])[..., :n_frames]
        else:
            used = combine[q].nonzero().flatten()
            rows = net.mask_logits(prepared, queries[b : b + 1, used])[..., :n_frames]
            logits = combine_logits(combine[q : q + 1, used], rows)
        second = net.masks(logits, binary)
        masked[b : b + 1, g : g + 1] = apply_masks(spec[b : b + 1], masks[b : b + 1, g : g + 1] * second)
    return masked


def separate(
    net: MaskNetwork, wave: torch.Tensor, queries: torch.Tensor, length: int | None = None, binary: bool | None = None
) -> torch.Tensor:
    """One piece of audio ``[B, T]`` and queries ``[B, Q, D]`` -> ``[B, Q, length]`` (default ``T``).

    Call ``eval()`` first for inference: in training mode BatchNorm uses the
    batch statistics. Long files go through :mod:`omnisep.apply`, which cuts
    them into chunks and calls :func:`separate_spectrogram` on each.
    """
    return separate_spectrogram(net, analyse(wave), queries, wave.shape[-1] if length is None else length, binary)
