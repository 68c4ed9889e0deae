"""Kind ``ensemble``: several trained Separate-Nets answering together (mean of their mask logits).

Why: two networks trained on the same task from different paths (another seed, other wordings and
pictures, another schedule) make partly independent errors, and averaging their mask logits removes
part of each one's. On this CPU budget that is cheaper than training one network to the same quality:
it costs one U-Net pass per member and no training. The members keep their own kinds and weights
(``members.0.*``, ``members.1.*`` in the checkpoint); query contrast, negative queries and Query-Aug act
on the averaged logits, so everything downstream treats an ensemble as one network.
``scripts/make_ensemble.py`` writes one from trained checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from omnisep.errors import OmniSepError
from omnisep.models.base import MaskNetwork, NetworkConfig
from omnisep.models.registry import build, config_from_dict, config_to_dict


@dataclass(frozen=True)
class EnsembleConfig(NetworkConfig):
    """``members``: the member networks' configs (their own ``kind``); ``weights``: their shares (default equal)."""

    members: tuple = ()
    weights: tuple = ()
    emb_dim: int = 384
    binary_mask: bool = False

    def __post_init__(self):
        self.check_fields()
        if len(self.members) < 2:
            raise OmniSepError(f"model config: an ensemble needs at least two members, got {len(self.members)}.")
        # A member written in a training config inherits what the ensemble sets: the encoder's emb_dim, binary_mask.
        members = tuple(
            replace(config_from_dict({"binary_mask": self.binary_mask, **member, "emb_dim": self.emb_dim}, strict=True)
                    if isinstance(member, dict) else member, emb_dim=self.emb_dim)
            for member in self.members
        )
        if any(isinstance(member, EnsembleConfig) for member in members):
            raise OmniSepError("model config: an ensemble's members cannot be ensembles themselves.")
        object.__setattr__(self, "members", members)
        weights = tuple(float(w) for w in self.weights) or tuple(1.0 / len(members) for _ in members)
        if len(weights) != len(members):
            raise OmniSepError(f"model config: {len(weights)} weights for {len(members)} ensemble members.")
        if any(not math.isfinite(w) or w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
            raise OmniSepError(f"model config: ensemble weights must be non-negative and sum to 1, got {list(weights)}.")
        object.__setattr__(self, "weights", weights)

    @property
    def time_multiple(self) -> int:
        """The members' coarsest time grid (a training config checks its segment length against it)."""
        return math.lcm(*(member.time_multiple for member in self.members))

    def to_dict(self) -> dict[str, Any]:
        return {
            "members": [config_to_dict(member) for member in self.members],
            "weights": list(self.weights),
            "emb_dim": self.emb_dim,
            "binary_mask": self.binary_mask,
        }


class EnsembleNet(MaskNetwork):
    kind = "ensemble"
    config_class = EnsembleConfig

    def __init__(self, config: EnsembleConfig):
        super().__init__(config)
        self.members = nn.ModuleList(build(member) for member in config.members)
        for member in self.members:
            if member.layout != self.layout:
                raise OmniSepError(f"model config: ensemble member '{member.kind}' needs frame layout {member.layout}.")

    @property
    def time_multiple(self) -> int:
        return self.config.time_multiple

    @property
    def context_frames(self) -> int:
        return max(member.context_frames for member in self.members)

    def prepare(self, mag_warped: torch.Tensor) -> list[Any]:
        return [member.prepare(mag_warped) for member in self.members]

    def mask_logits(self, prepared: list[Any], queries: torch.Tensor) -> torch.Tensor:
        self.check_queries(queries)
        total = None
        for member, weight, state in zip(self.members, self.config.weights, prepared):
            logits = weight * member.mask_logits(state, queries)
            total = logits if total is None else total + logits
        return total
