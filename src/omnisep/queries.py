"""Query arithmetic of the paper: composition (eq. 1), negative queries (eq. 4), Query-Aug (eq. 5).

All functions work on embeddings from one frozen encoder. Every part is
L2-normalised before it is combined because the encoders' raw norms differ
per modality; the combined query itself is not re-normalised unless asked,
as in the paper.

A negative query can also act after the network instead of before it (mode
``logit``): the mask logits of the query and of the negative are combined,
``(1 + a) logits(q) - a logits(q_neg)``. Eq. 4 moves the query vector off
the embeddings the network was trained on; a query-conditioned network
(kind ``film``) answers such vectors badly, while both logits come from
queries it knows. :class:`QueryRows` carries the rows the network sees and
how their logits combine.

The same sum gives a *query contrast*: ``(1 + b) logits(q) - b
logits(q_bg)`` with ``q_bg`` the mean of the model's class queries
(:func:`background_query`) keeps what the query claims more than sound in
general does; a model records whether it wants it (``inference.contrast``).
It applies to queries with nothing subtracted: with a negative query it
lowered v2's SDR on validation (the negative already contrasts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from omnisep.errors import OmniSepError

NEGATIVE_MODES = ("proportional", "naive", "logit")
VECTOR_NEGATIVE_MODES = ("proportional", "naive")  # eq. 4 on the query vector; "logit" combines mask logits
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
    if mode == "logit":
        raise ValueError("the logit negative mode combines mask logits, not vectors: use negative_terms")
    check_negative_mode(mode)
    alpha = check_alpha(alpha)
    if q.shape[-1] != q_neg.shape[-1]:
        raise OmniSepError(
            f"query: the negative query has {q_neg.shape[-1]} dimensions, the query {q.shape[-1]}."
        )
    keep = 1.0 + alpha if mode == "proportional" else 1.0
    return keep * q - alpha * normalize(q_neg)


def check_negative_mode(mode: str) -> str:
    if mode not in NEGATIVE_MODES:
        raise OmniSepError(f"query: unknown negative-query mode {mode!r}; use one of {', '.join(NEGATIVE_MODES)}.")
    return mode


def check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise OmniSepError(f"query: the negative-query strength alpha must be a finite number >= 0, got {alpha}.")
    return alpha


def negative_terms(q: torch.Tensor, q_neg: torch.Tensor, alpha: float = 0.5, mode: str = "proportional") -> list:
    """One output's ``(row, weight)`` terms with a negative query (see :class:`QueryRows`).

    Eq. 4's modes give one row, the combined vector; the logit mode gives the
    query and the normalised negative, whose mask logits are combined.
    """
    if mode != "logit":
        return [(negative(q, q_neg, alpha, mode), 1.0)]
    alpha = check_alpha(alpha)
    if q.shape[-1] != q_neg.shape[-1]:
        raise OmniSepError(f"query: the negative query has {q_neg.shape[-1]} dimensions, the query {q.shape[-1]}.")
    return [(q, 1.0 + alpha), (normalize(q_neg.to(q.dtype)), -alpha)]


def combine_logits(combine: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """Rows' mask logits ``[B, R, ...]`` -> outputs' ``[B, Q, ...]`` by ``combine`` ``[Q, R]`` (None: as they are)."""
    if combine is None:
        return logits
    return torch.einsum("qr,br...->bq...", combine.to(logits.dtype), logits)


@dataclass(frozen=True)
class QueryRows:
    """What the network is asked: query rows ``[R, D]``, and the output masks as sums of their logits.

    ``combine`` ``[Q, R]`` gives output ``i``'s logits as ``sum_r combine[i, r]
    logits(row r)``; ``None`` means one output per row (the usual case, ``Q = R``).
    ``second_look`` (dB, None: never): an output under that share of the
    mixture's energy is separated again from itself
    (:func:`omnisep.models.signal_path.look_again`).
    """

    rows: torch.Tensor
    combine: torch.Tensor | None = None
    second_look: float | None = None

    def __post_init__(self):
        if self.rows.dim() != 2:
            raise ValueError(f"query rows must be [R, D], got shape {tuple(self.rows.shape)}")
        if self.combine is not None and (self.combine.dim() != 2 or self.combine.shape[1] != self.rows.shape[0]):
            raise ValueError(f"combine must be [Q, {self.rows.shape[0]}], got shape {tuple(self.combine.shape)}")

    def __len__(self) -> int:
        return self.rows.shape[0] if self.combine is None else self.combine.shape[0]

    @property
    def dim(self) -> int:
        return self.rows.shape[-1]

    @classmethod
    def of(cls, queries) -> "QueryRows":
        """A ``[Q, D]`` tensor (one output per row) or QueryRows as they are."""
        return queries if isinstance(queries, cls) else cls(torch.as_tensor(queries))

    def to(self, device, dtype=torch.float32) -> "QueryRows":
        combine = None if self.combine is None else self.combine.detach().to(device, dtype)
        return QueryRows(self.rows.detach().to(device, dtype), combine, self.second_look)

    def looking_again(self, below_db: float | None) -> "QueryRows":
        """The same rows with the second look at ``below_db`` (None: none)."""
        return dataclasses.replace(self, second_look=None if below_db is None else float(below_db))

    @classmethod
    def with_negatives(cls, positives: Sequence[torch.Tensor], negatives: Sequence[torch.Tensor | None],
                       alphas: Sequence[float]) -> "QueryRows":
        """Output ``i``: ``(1 + a_i) logits(p_i) - a_i logits(normalize(n_i))``, or ``logits(p_i)`` without a negative."""
        outputs = [[(positive, 1.0)] if negative_vector is None else negative_terms(positive, negative_vector, alpha, "logit")
                   for positive, negative_vector, alpha in zip(positives, negatives, alphas)]
        return cls.from_terms(outputs)

    @classmethod
    def from_terms(cls, outputs: Sequence[Sequence[tuple[torch.Tensor, float]]], second_look: float | None = None) -> "QueryRows":
        """Output ``i``'s logits are ``sum w * logits(row)`` over its ``(row, w)`` terms; equal rows are asked once."""
        index: dict[bytes, int] = {}
        rows, entries = [], []
        for output, terms in enumerate(outputs):
            for row, weight in terms:
                key = row.detach().float().cpu().numpy().tobytes()
                if key not in index:
                    index[key] = len(rows)
                    rows.append(row)
                entries.append((output, index[key], float(weight)))
        plain = len(rows) == len(outputs) and all(o == r and w == 1.0 for o, r, w in entries) and len(entries) == len(rows)
        if plain:
            return cls(torch.stack(rows), None, second_look)
        combine = torch.zeros(len(outputs), len(rows))
        for output, row, weight in entries:
            combine[output, row] += weight
        return cls(torch.stack(rows), combine, second_look)

    def logits(self, net, prepared, rows: torch.Tensor) -> torch.Tensor:
        """``net``'s mask logits ``[B, Q, bins, F]`` for these rows, given batched as ``rows`` ``[B, R, D]``."""
        return combine_logits(self.combine, net.mask_logits(prepared, rows))


def background_query(embeddings: torch.Tensor) -> torch.Tensor:
    """The query contrast's ``q_bg``: the normalised mean of the normalised class queries ``[N, D] -> [D]``."""
    return normalize(normalize(torch.as_tensor(embeddings, dtype=torch.float32)).mean(0))


def contrast_terms(terms: list, background: torch.Tensor | None, strength: float) -> list:
    """``(row, weight)`` terms of one output with the query contrast added: the first (the query's own)
    row gains ``strength``, the background row gets ``-strength`` (weights still sum to 1)."""
    if background is None or strength <= 0:
        return terms
    (query, weight), *rest = terms
    return [(query, weight + strength), *rest, (background.to(query.dtype), -float(strength))]


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
