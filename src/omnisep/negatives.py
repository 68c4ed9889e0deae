"""Automatic negative queries: find what else sounds in the recording and subtract it.

A negative query (paper eq. 4) helps every query modality, but the user must
know what else is in the recording. Here the scan (:mod:`omnisep.scan`) says
it: every label of the model's bank is separated at once and ranked by
presence; the strongest labels that are *not* the query's own sound become the
negative query. The query's own sound is its nearest bank label (what
Query-Aug would pick); labels whose bank rows are at least ``max_similarity``
close (cosine) to that own label are left out too, because subtracting a
near-synonym of the target subtracts the target. Comparing labels with labels
makes the cut-off mean the same for text, image and audio queries, whose
cosines to the (text) bank rows differ in scale.

The choice costs one extra U-Net pass over the recording (the scan) and is
reported, so the user sees which labels were subtracted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from omnisep.errors import OmniSepError

# Chosen on the corpus's validation mixtures (docs/results/auto-negative/, scripts/evaluate_query_tools.sh).
# The best mean SDRi over the validation mixtures (text queries), the only setting there no worse than
# no negative on average (+0.04 dB); see docs/query-tools.md.
DEFAULT_COUNT = 1
DEFAULT_MAX_SIMILARITY = 0.55
DEFAULT_ALPHA = 0.25
# A label whose presence is under this (-30 dB of the mixture's energy, or a verified scan that heard
# nothing like it) is not heard: never a reason to subtract it.
HEARD = 1e-3


@dataclasses.dataclass(frozen=True)
class AutoNegative:
    """How the negative query is chosen: the ``count`` most present other labels of the scan.

    ``min_presence``: labels scanned below it are never used (so a clean
    recording of one sound gets no negative). ``alpha``: the negative's
    strength for the chosen labels (None: the query's own ``alpha`` if it
    gives one, else the model's ``auto_alpha``, :data:`DEFAULT_ALPHA` for models that record none).
    """

    count: int | None = None  # None: the model's auto_count (DEFAULT_COUNT for models that record none)
    max_similarity: float = DEFAULT_MAX_SIMILARITY
    min_presence: float = 0.0
    alpha: float | None = None

    def __post_init__(self):
        if self.count is not None and (isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1):
            raise OmniSepError(f"the automatic negative query needs at least 1 label, got {self.count!r}.")
        if not -1.0 <= float(self.max_similarity) <= 1.0:
            raise OmniSepError(f"the similarity cut-off must be a cosine in [-1, 1], got {self.max_similarity}.")
        if not 0.0 <= float(self.min_presence) <= 1.0:
            raise OmniSepError(f"the smallest presence must be in [0, 1], got {self.min_presence}.")

    @classmethod
    def coerce(cls, value) -> "AutoNegative | None":
        """``None``, ``"auto"``, an int (that many labels) or an :class:`AutoNegative`."""
        if value is None or value is False:
            return None
        if isinstance(value, cls):
            return value
        if value is True or (isinstance(value, str) and value.strip().lower() == "auto"):
            return cls()
        if isinstance(value, int):
            return cls(count=value)
        raise OmniSepError(f"negative={value!r} is not understood; use 'auto' (or give negative texts, images or audio).")


@dataclasses.dataclass(frozen=True)
class NegativeChoice:
    """One label chosen as (part of) the negative query."""

    label: str
    presence: float  # the scan's presence score of the label, in [0, 1]
    similarity: float  # cosine between the label's bank row and the query's own (nearest) label's

    def to_dict(self) -> dict:
        return {"label": self.label, "presence": round(self.presence, 4), "similarity": round(self.similarity, 4)}


def similarities(query: torch.Tensor, bank) -> torch.Tensor:
    """Cosine between the query ``[D]`` and every bank row: ``[N]``."""
    from omnisep.queries import normalize

    rows = torch.as_tensor(bank.embeddings, dtype=torch.float32)
    return (normalize(rows) @ normalize(torch.as_tensor(query, dtype=torch.float32).reshape(-1))).cpu()


def choose(scan_result, query: torch.Tensor, bank, setting: AutoNegative | None = None) -> list[NegativeChoice]:
    """The labels to subtract from ``query``, most present first (possibly none).

    ``scan_result`` must come from the same model (its labels are the bank's).
    """
    setting = setting or AutoNegative()
    if list(scan_result.labels) != list(bank.labels):
        raise ValueError("the scan and the query bank list different labels (another model?)")
    own = int(similarities(query, bank).argmax())
    cosine = similarities(torch.as_tensor(bank.embeddings[own]), bank)
    chosen = []
    for index in scan_result.ranking():
        if len(chosen) == (DEFAULT_COUNT if setting.count is None else setting.count):
            break
        presence = float(scan_result.presence[index])
        if index == own or float(cosine[index]) >= setting.max_similarity or presence < setting.min_presence:
            continue
        if presence < HEARD:
            break  # nothing of it is heard: never a reason to subtract it
        chosen.append(NegativeChoice(bank.labels[index], presence, float(cosine[index])))
    return chosen


def negative_vector(bank, choices: Sequence[NegativeChoice]) -> torch.Tensor:
    """The chosen labels' bank rows, each normalised, averaged (eq. 1 with equal weights)."""
    from omnisep.queries import compose

    rows = {label: row for label, row in zip(bank.labels, torch.as_tensor(bank.embeddings, dtype=torch.float32))}
    return compose([rows[choice.label] for choice in choices], [1.0] * len(choices))


def apply(query: torch.Tensor, bank, choices: Sequence[NegativeChoice], alpha: float, mode: str = "proportional") -> torch.Tensor:
    """Eq. 4 with the chosen labels as ``q_neg``; the query unchanged when nothing was chosen."""
    from omnisep.queries import negative

    if not choices:
        return query
    return negative(query, negative_vector(bank, choices).to(query.dtype), alpha=alpha, mode=mode)


def describe(choices: Sequence[NegativeChoice]) -> str:
    """``- dog barking - speech (auto)``, or ``(auto: nothing else found)``."""
    if not choices:
        return "(auto: nothing else found)"
    return " ".join(f"- {choice.label}" for choice in choices) + " (auto)"
