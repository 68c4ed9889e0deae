"""The separator contract: what every Separate-Net kind declares and provides.

A network maps (warped mixture magnitude, query vectors) to mask logits. It
declares the frame layout it was built for and the time geometry that
chunked and streamed inference must respect; everything around it (STFT,
warp, masking, iSTFT, chunking, training targets) lives in
:mod:`omnisep.models.signal_path` and does not depend on the kind.

The work is split in two so that N queries need not cost N passes: a
query-independent :meth:`MaskNetwork.prepare` and a query-dependent
:meth:`MaskNetwork.mask_logits`. The paper's network puts the whole U-Net in
``prepare``; a query-conditioned network puts as much as it can there.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from omnisep import spectral
from omnisep.errors import OmniSepError


@dataclass(frozen=True)
class FrameLayout:
    """The time-frequency grid a network was trained on."""

    sample_rate: int = spectral.SAMPLE_RATE
    n_fft: int = spectral.N_FFT
    hop: int = spectral.HOP
    warped_bins: int = spectral.N_WARP


PAPER_LAYOUT = FrameLayout()


class NetworkConfig:
    """Mixin for a network's frozen config dataclass: dict round trip with checked keys and types.

    Every config has ``emb_dim`` (the query width, set from the encoder) and
    ``binary_mask``; the rest is the network's own.
    """

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], strict: bool = False):
        """``strict``: every field must be given (a checkpoint must not fall back to defaults)."""
        if not isinstance(values, dict):
            raise OmniSepError(f"model config: expected a mapping, got {type(values).__name__}.")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise OmniSepError(
                f"model config: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys are {', '.join(sorted(known))}."
            )
        missing = sorted(known - set(values))
        if strict and missing:
            raise OmniSepError(f"model config: missing key(s) {', '.join(map(repr, missing))}.")
        return cls(**values)

    def check_fields(self) -> None:
        """Positive ints for int fields, bools for bool fields (call from ``__post_init__``)."""
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind = hints[field.name]
            if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise OmniSepError(f"model config: '{field.name}' must be a positive integer, got {value!r}.")
            if kind is bool and not isinstance(value, bool):
                raise OmniSepError(f"model config: '{field.name}' must be true or false, got {value!r}.")
            if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise OmniSepError(f"model config: '{field.name}' must be a number, got {value!r}.")


class MaskNetwork(nn.Module):
    """Base class of every Separate-Net kind (see the module docstring).

    Subclasses set ``kind`` and ``config_class`` and implement
    :meth:`prepare` and :meth:`mask_logits`; they register themselves in
    :mod:`omnisep.models.registry`.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type]
    layout: ClassVar[FrameLayout] = PAPER_LAYOUT

    def __init__(self, config):
        super().__init__()
        self.config = config

    @property
    def emb_dim(self) -> int:
        return self.config.emb_dim

    @property
    def time_multiple(self) -> int:
        """Frame counts given to the network must be multiples of this (callers pad with silence)."""
        raise NotImplementedError

    @property
    def context_frames(self) -> int:
        """Frames of real context on each side after which a frame's mask no longer changes.

        Chunked inference uses at least this much context, so that it equals
        one-piece inference (for shift-equivariant networks).
        """
        raise NotImplementedError

    def prepare(self, mag_warped: torch.Tensor) -> Any:
        """Query-independent work on ``[B, 1, bins, F]`` (the input is ``warp(|X| + 1e-10)``)."""
        raise NotImplementedError

    def mask_logits(self, prepared: Any, queries: torch.Tensor) -> torch.Tensor:
        """``prepared`` and queries ``[B, Q, D]`` -> mask logits ``[B, Q, bins, F]``."""
        raise NotImplementedError

    def forward(self, mag_warped: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        return self.mask_logits(self.prepare(mag_warped), queries)

    def adapt_state(self, state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
        """Another checkpoint's weights in this network's names (warm start); its own kind passes through."""
        if kind != self.kind:
            raise OmniSepError(f"a '{self.kind}' network cannot start from the weights of a '{kind}' network.")
        return state

    def masks(self, logits: torch.Tensor, binary: bool | None = None) -> torch.Tensor:
        """Soft masks (sigmoid), or 0/1 masks thresholded at 0.5 when binary."""
        binary = self.config.binary_mask if binary is None else binary
        return (logits > 0).to(logits.dtype) if binary else torch.sigmoid(logits)

    def check_queries(self, queries: torch.Tensor) -> None:
        if queries.dim() != 3:
            raise ValueError(f"queries must be [B, Q, D], got shape {tuple(queries.shape)}")
        if queries.shape[-1] != self.emb_dim:
            raise OmniSepError(
                f"query embeddings have {queries.shape[-1]} dimensions but the model expects {self.emb_dim}."
            )
