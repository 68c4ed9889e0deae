"""Query arithmetic of the paper: composition (eq. 1), negative queries (eq. 4), Query-Aug (eq. 5).

All functions work on embeddings from one frozen encoder. Every part is
L2-normalised before it is combined because the encoders' raw norms differ
per modality; the combined query itself is not re-normalised unless asked,
as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from omnisep.errors import OmniSepError

NEGATIVE_MODES = ("proportional", "naive")
OMNI_WEIGHTS = (2.0, 2.0, 1.0)  # image, text, audio: the paper's evaluation query


def normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return F.normalize(x, dim=dim)


def compose(parts: Sequence[torch.Tensor], weights: Sequence[float], renormalize: bool = False) -> torch.Tensor:
    """Eq. 1: ``sum_i w_i * normalize(part_i)``; parts are ``[D]`` or ``[B, D]`` and broadcast."""
    if len(parts) == 0:
        raise OmniSepError("query: at least one query (text, image or audio) is needed.")
    if len(parts) != len(weights):
        raise OmniSepError(f"query: {len(weights)} weight(s) were given for {len(parts)} query part(s).")
    weights = [float(w) for w in weights]
    if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) == 0:
        raise OmniSepError(
            f"query: weights must be finite, non-negative and not all zero, got {weights}; "
            "use a negative query to subtract a concept."
        )
    dims = {part.shape[-1] for part in parts}
    if len(dims) != 1:
        raise OmniSepError(f"query: the parts have different embedding sizes {sorted(dims)}.")
    total = sum(w * normalize(part) for w, part in zip(weights, parts))
    return normalize(total) if renormalize else total


def omni_query(
    image: torch.Tensor | None,
    text: torch.Tensor | None,
    audio: torch.Tensor | None,
    weights: Sequence[float] = OMNI_WEIGHTS,
) -> torch.Tensor:
    """The evaluation query ``normalize((2 img + 2 text + audio) / 5)``; missing parts are left out."""
    present = [(part, w) for part, w in zip((image, text, audio), weights) if part is not None]
    if not present:
        raise OmniSepError("query: at least one of image, text or audio is needed.")
    return compose([p for p, _ in present], [w for _, w in present], renormalize=True)


def negative(q: torch.Tensor, q_neg: torch.Tensor, alpha: float = 0.5, mode: str = "proportional") -> torch.Tensor:
    """Eq. 4: ``(1 + a) q - a normalize(q_neg)`` (proportional) or ``q - a normalize(q_neg)`` (naive).

    The proportional form keeps the query's weight on its own concept when the
    negative overlaps it; the naive form is the paper's baseline.
    """
    if mode not in NEGATIVE_MODES:
        raise OmniSepError(f"query: unknown negative-query mode {mode!r}; use one of {', '.join(NEGATIVE_MODES)}.")
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise OmniSepError(f"query: the negative-query strength alpha must be a finite number >= 0, got {alpha}.")
    if q.shape[-1] != q_neg.shape[-1]:
        raise OmniSepError(
            f"query: the negative query has {q_neg.shape[-1]} dimensions, the query {q.shape[-1]}."
        )
    keep = 1.0 + alpha if mode == "proportional" else 1.0
    return keep * q - alpha * normalize(q_neg)


class QueryBank:
    """In-domain class queries for Query-Aug (eq. 5): snap an open query to the nearest class."""

    EMBEDDINGS_KEY = "query_bank.embeddings"

    def __init__(self, labels: Sequence[str], embeddings: torch.Tensor):
        labels = [str(label) for label in labels]
        if embeddings.dim() != 2:
            raise OmniSepError(f"query bank: embeddings must be [N, D], got shape {tuple(embeddings.shape)}.")
        if len(labels) == 0 or embeddings.shape[0] == 0:
            raise OmniSepError("query bank: the bank is empty; Query-Aug needs at least one class query.")
        if len(labels) != embeddings.shape[0]:
            raise OmniSepError(f"query bank: {len(labels)} labels for {embeddings.shape[0]} embeddings.")
        if not torch.isfinite(embeddings).all() or (embeddings.norm(dim=-1) == 0).any():
            raise OmniSepError("query bank: some embeddings are zero, NaN or infinite.")
        self.labels = labels
        self.embeddings = normalize(embeddings.detach().float())

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def retrieve(self, q: torch.Tensor) -> tuple[torch.Tensor, str | list, torch.Tensor]:
        """Top-1 cosine match for ``q [..., D]``.

        Returns the matched rows (normalised, ``[..., D]``), their labels (a
        ``str`` for a single ``[D]`` query, otherwise nested lists shaped like
        ``q.shape[:-1]``) and the cosine scores ``[...]``.
        """
        if q.shape[-1] != self.dim:
            raise OmniSepError(f"query bank: the query has {q.shape[-1]} dimensions, the bank {self.dim}.")
        bank = self.embeddings.to(device=q.device, dtype=q.dtype)
        scores = normalize(q) @ bank.T
        best_scores, best = scores.max(dim=-1)
        picked = np.array(self.labels, dtype=object)[best.cpu().numpy()]
        labels = picked.tolist() if isinstance(picked, np.ndarray) else picked
        return bank[best], labels, best_scores

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {self.EMBEDDINGS_KEY: self.embeddings.contiguous()}

    @classmethod
    def from_tensors(cls, labels: Sequence[str], tensors: dict[str, torch.Tensor]) -> "QueryBank":
        if cls.EMBEDDINGS_KEY not in tensors:
            raise OmniSepError(f"query bank: the tensor {cls.EMBEDDINGS_KEY!r} is missing.")
        return cls(labels, tensors[cls.EMBEDDINGS_KEY])


def mixup_weights(available: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Query-Mixup weights ``[B, M]``: U(0, 1] over available modalities, divided by their sum."""
    if available.dim() != 2:
        raise ValueError(f"mixup_weights expects available [B, M], got shape {tuple(available.shape)}")
    available = available.bool()
    if not available.any(dim=1).all():
        raise OmniSepError("query-mixup: an item has no query modality available (no text, image or audio).")
    device = generator.device if generator is not None else available.device
    # 1 - U[0, 1) lies in (0, 1]: a lone available modality never gets weight 0/0.
    draws = 1.0 - torch.rand(available.shape, generator=generator, device=device)
    draws = draws.to(available.device) * available
    return draws / draws.sum(dim=1, keepdim=True)
