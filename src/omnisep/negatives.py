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

A second way needs no scan (``source="residual"``): separate with the query
alone, let the query encoder listen to what it leaves (the residual,
:class:`ResidualEvidence`), and subtract the other labels nearest to that
(:func:`choose_by_embedding`). The third (``source="scan+residual"``) adds the
two evidences per label (:func:`choose_combined`): the scan knows what is
loud, the residual what the query failed to take. The sound tagger can hear
the residual instead of the query encoder (``source="residual-tagger"``,
:class:`ResidualTags`, :func:`choose_by_tags`), alone or times the scan's
presence per label (``"scan*residual-tagger"``). Which way a model uses by
default is measured per model on held-out sounds (``inference.negative.auto_source``;
docs/query-tools.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from omnisep.errors import OmniSepError
from omnisep.states import AUTO_SOURCES

# Chosen on the corpus's validation mixtures (docs/results/auto-negative/, scripts/evaluate_query_tools.sh).
# The best mean SDRi over the validation mixtures (text queries), the only setting there no worse than
# no negative on average (+0.04 dB); see docs/query-tools.md.
DEFAULT_COUNT = 1
DEFAULT_MAX_SIMILARITY = 0.55
DEFAULT_ALPHA = 0.25
# A label whose presence is under this (-30 dB of the mixture's energy, or a verified scan that heard
# nothing like it) is not heard: never a reason to subtract it.
HEARD = 1e-3
# A guard, not a tuned value: what the query leaves must resemble a label at least this much (cosine of the
# query encoder's embeddings) for that label to be subtracted.
HEARD_COSINE = 0.05
# The residual is heard in windows of this length (the length of a corpus clip), each weighted by its energy.
EVIDENCE_WINDOW_SECONDS = 4.0
# The sources whose labels the sound tagger hears in what the query leaves (ResidualTags).
TAGGER_SOURCES = ("residual-tagger", "scan*residual-tagger")


@dataclasses.dataclass(frozen=True)
class AutoNegative:
    """How the negative query is chosen: the ``count`` most present other labels of the scan.

    ``min_presence``: labels scanned below it are never used (so a clean
    recording of one sound gets no negative). ``alpha``: the negative's
    strength for the chosen labels (None: the query's own ``alpha`` if it
    gives one, else the model's ``auto_alpha``, :data:`DEFAULT_ALPHA` for models that record none).
    ``source``: ``"scan"`` (the labels the scan finds most present),
    ``"residual"`` (the labels nearest to what the query alone leaves) or
    ``"scan+residual"`` (the two summed per label), ``"residual-tagger"`` (the
    labels the sound tagger hears most in what the query alone leaves) or
    ``"scan*residual-tagger"`` (that times the scan's presence per label);
    None: the model's ``auto_source`` (``"scan"`` for models that record none).
    ``min_presence`` applies to the scan's presence (sources ``"scan"`` and ``"scan+residual"``).
    """

    count: int | None = None  # None: the model's auto_count (DEFAULT_COUNT for models that record none)
    max_similarity: float = DEFAULT_MAX_SIMILARITY
    min_presence: float = 0.0
    alpha: float | None = None
    source: str | None = None

    def __post_init__(self):
        if self.count is not None and (isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1):
            raise OmniSepError(f"the automatic negative query needs at least 1 label, got {self.count!r}.")
        if not -1.0 <= float(self.max_similarity) <= 1.0:
            raise OmniSepError(f"the similarity cut-off must be a cosine in [-1, 1], got {self.max_similarity}.")
        if not 0.0 <= float(self.min_presence) <= 1.0:
            raise OmniSepError(f"the smallest presence must be in [0, 1], got {self.min_presence}.")
        if self.source is not None and self.source not in AUTO_SOURCES:
            raise OmniSepError(f"the automatic negative comes from one of {', '.join(AUTO_SOURCES)}, not {self.source!r}.")

    @property
    def labels(self) -> int:
        """How many labels to subtract (:data:`DEFAULT_COUNT` when the setting leaves it to the model)."""
        return DEFAULT_COUNT if self.count is None else self.count

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
    presence: float  # the scan's presence score of the label, in [0, 1]; from the residual: its cosine with the label;
    # from both: their sum
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
    own, cosine = _own_label(query, bank)
    chosen = []
    for index in scan_result.ranking():
        if len(chosen) == setting.labels:
            break
        presence = float(scan_result.presence[index])
        if index == own or float(cosine[index]) >= setting.max_similarity or presence < setting.min_presence:
            continue
        if presence < HEARD:
            break  # nothing of it is heard: never a reason to subtract it
        chosen.append(NegativeChoice(bank.labels[index], presence, float(cosine[index])))
    return chosen


def _own_label(query: torch.Tensor, bank) -> tuple[int, torch.Tensor]:
    """The query's own label (its nearest bank row) and every row's cosine to that label's row."""
    own = int(similarities(query, bank).argmax())
    return own, similarities(torch.as_tensor(bank.embeddings[own]), bank)


def choose_by_embedding(evidence: torch.Tensor, query: torch.Tensor, bank, setting: AutoNegative | None = None) -> list[NegativeChoice]:
    """The labels nearest to ``evidence`` (the query encoder's embedding of what the query leaves, the
    residual) that are not the query's own sound, nearest first; ``presence`` holds that cosine. A label
    the residual barely resembles (cosine under :data:`HEARD_COSINE`) is not heard there: never subtracted."""
    setting = setting or AutoNegative()
    own, cosine = _own_label(query, bank)
    return _strongest(similarities(evidence, bank), own, cosine, bank, setting, HEARD_COSINE)


def _strongest(score: torch.Tensor, own: int, cosine: torch.Tensor, bank, setting: AutoNegative, floor: float) -> list[NegativeChoice]:
    """The ``setting.labels`` labels of highest ``score``, highest first, leaving out the query's ``own`` label
    and those at least ``setting.max_similarity`` close to it (``cosine``); none scored under ``floor``."""
    chosen = []
    for index in torch.argsort(score, descending=True, stable=True).tolist():
        if len(chosen) == setting.labels:
            break
        if index == own or float(cosine[index]) >= setting.max_similarity:
            continue
        if float(score[index]) < floor:
            break
        chosen.append(NegativeChoice(bank.labels[index], float(score[index]), float(cosine[index])))
    return chosen


def choose_combined(scan_result, evidence: torch.Tensor | None, query: torch.Tensor, bank,
                    setting: AutoNegative | None = None) -> list[NegativeChoice]:
    """The other labels with the most evidence, most first: the scan's presence plus the cosine of
    ``evidence`` (what the query leaves, as the query encoder hears it; None: nothing audible is left,
    so the scan alone). A label neither heard by the scan (:data:`HEARD`) nor in the residual
    (:data:`HEARD_COSINE`) is never subtracted; the same exclusions as :func:`choose`.

    The two fail differently: the scan ranks every loud sound, the target's confusable neighbours
    included; the residual holds what the query did not take, but a weak query leaves its own sound
    there too. On the corpus's validation mixtures the sum chooses better than either; on held-out
    sounds, which the encoder names worse, the residual misleads it (docs/query-tools.md), so no
    bundled model uses it by default.
    """
    setting = setting or AutoNegative()
    if list(scan_result.labels) != list(bank.labels):
        raise ValueError("the scan and the query bank list different labels (another model?)")
    own, cosine = _own_label(query, bank)
    presence = torch.as_tensor(np.asarray(scan_result.presence, dtype=np.float32))
    closeness = similarities(evidence, bank) if evidence is not None else torch.zeros_like(presence)
    score = presence + closeness
    chosen = []
    for index in torch.argsort(score, descending=True, stable=True).tolist():
        if len(chosen) == setting.labels:
            break
        if index == own or float(cosine[index]) >= setting.max_similarity or float(presence[index]) < setting.min_presence:
            continue
        if float(presence[index]) < HEARD and float(closeness[index]) < HEARD_COSINE:
            continue  # neither evidence hears it
        chosen.append(NegativeChoice(bank.labels[index], float(score[index]), float(cosine[index])))
    return chosen


def choose_reranked(scan_result, evidence: torch.Tensor, query: torch.Tensor, bank, setting: AutoNegative | None = None,
                    candidates: int = 3) -> list[NegativeChoice]:
    """The scan's ``candidates`` most present other labels (:func:`choose`), re-ordered by how close each
    is to ``evidence`` (the embedding of what the query leaves); the first ``count`` of them.

    The scan often has the interferer among its first few labels but not first; what the query
    leaves behind is mostly the interferer, so its embedding breaks the tie between those few.
    """
    setting = setting or AutoNegative()
    pool = choose(scan_result, query, bank, dataclasses.replace(setting, count=max(candidates, setting.labels)))
    closeness = similarities(evidence, bank)
    row = {label: index for index, label in enumerate(bank.labels)}
    pool.sort(key=lambda choice: -float(closeness[row[choice.label]]))
    return pool[: setting.labels]


def choose_by_tags(tags: np.ndarray | None, query: torch.Tensor, bank, setting: AutoNegative | None = None,
                   presence=None) -> list[NegativeChoice]:
    """The labels the sound tagger hears most in what the query leaves (``tags``, :class:`ResidualTags`), not
    the query's own sound, most first; times the scan's ``presence`` per label when given (a ScanResult of
    the mixture). ``presence`` in the choices holds the score. None (nothing audible left): no negative.

    Why: the scan tags the mixture, where the target is the loudest thing the tagger hears; in what the
    query leaves, the target is turned down and the other sound is what remains.
    """
    setting = setting or AutoNegative()
    if tags is None:
        return []
    own, cosine = _own_label(query, bank)
    score = torch.as_tensor(np.asarray(tags, dtype=np.float32))
    if presence is not None:
        if list(presence.labels) != list(bank.labels):
            raise ValueError("the scan and the query bank list different labels (another model?)")
        score = score * torch.as_tensor(np.asarray(presence.presence, dtype=np.float32))
    return _strongest(score, own, cosine, bank, setting, HEARD)


class _ResidualWindows:
    """A sink with ``write([C, n])`` for what a query leaves (the residual), heard window by window.

    Blocks of any size at ``sample_rate`` (a whole array, or the blocks of a
    streamed file) are mixed to mono and cut into ``window_seconds`` windows
    (default :data:`EVIDENCE_WINDOW_SECONDS`, the length of a corpus clip);
    each window's hearing (:meth:`_hear`, a vector) counts in proportion to
    the window's energy, so the parts where something else is loud speak most,
    and memory stays flat. The query's target goes to ``self.target`` (also
    ``write([C, n])``), which only measures its energy: when the residual
    holds under :data:`HEARD` of the energy of target and residual together,
    the query took (nearly) everything and there is nothing else to subtract.
    Call :meth:`result` once, after the last block.
    """

    def __init__(self, sample_rate: int, window_seconds: float = EVIDENCE_WINDOW_SECONDS, shortest_seconds: float = 0.0):
        self.rate = int(sample_rate)
        self.window = int(round(window_seconds * self.rate))
        self.shortest = max(1, int(np.ceil(shortest_seconds * self.rate)))
        self.pending = np.zeros(0, dtype=np.float32)
        self.total: torch.Tensor | None = None
        self.weight = 0.0  # the summed energy of the windows heard
        self.energy = 0.0  # sum of squares of the residual, at the input's rate
        self.target = _EnergyMeter()

    @classmethod
    def of(cls, listener, sample_rate: int, mixture: np.ndarray, target: np.ndarray, **options):
        """:meth:`result` of what ``target`` leaves of ``mixture`` (whole arrays ``[C, T]`` or ``[T]``)."""
        return cls(listener, sample_rate, **options).hear(mixture, target)

    def hear(self, mixture: np.ndarray, target: np.ndarray):
        """This fresh sink's :meth:`result` for what ``target`` leaves of ``mixture``, both whole arrays."""
        self.target.write(target)
        self.write(np.asarray(mixture, dtype=np.float32) - np.asarray(target, dtype=np.float32))
        return self.result()

    def write(self, block) -> None:
        block = np.asarray(block, dtype=np.float32)
        self.energy += float(np.sum(np.square(block, dtype=np.float64)))
        mono = block.reshape(-1, block.shape[-1]).mean(axis=0) if block.ndim > 1 else block
        self.pending = np.concatenate([self.pending, mono])
        # A window is heard once a quarter window follows it, so that the last window takes a remainder
        # shorter than that instead of judging a sliver on its own (and a 4.1 s clip is heard whole).
        while self.pending.size >= self.window + self.window // 4:
            self._window(self.pending[: self.window])
            self.pending = self.pending[self.window :]

    def _finish(self) -> torch.Tensor | None:
        """The energy-weighted sum of the windows' hearings, or None when nothing audible was left."""
        if self.pending.size >= self.shortest:
            self._window(self.pending)
        self.pending = np.zeros(0, dtype=np.float32)
        if self.energy <= HEARD * (self.energy + self.target.energy):
            return None
        if self.total is None or not bool(torch.isfinite(self.total).all()) or float(self.total.norm()) == 0.0:
            return None
        return self.total

    def _window(self, clip: np.ndarray) -> None:
        energy = float(np.mean(np.square(clip, dtype=np.float64)))
        if energy < 1e-10:  # -100 dB: nothing left there
            return
        heard = self._hear(clip).to(torch.float64)
        self.total = energy * heard if self.total is None else self.total + energy * heard
        self.weight += energy

    def _hear(self, clip: np.ndarray) -> torch.Tensor:
        raise NotImplementedError


class ResidualEvidence(_ResidualWindows):
    """What a query leaves, as the query encoder hears it (:meth:`embedding`: the normalised
    energy-weighted sum of the windows' audio embeddings, or None when nothing audible was left);
    see :class:`_ResidualWindows`. The encoder takes the windows at the input's rate (it resamples
    as for any audio query)."""

    def __init__(self, encoder, sample_rate: int, window_seconds: float = EVIDENCE_WINDOW_SECONDS):
        super().__init__(sample_rate, window_seconds, encoder.min_audio_seconds)
        self.encoder = encoder

    def embedding(self) -> torch.Tensor | None:
        from omnisep.queries import normalize

        total = self._finish()
        return None if total is None else normalize(total.float())

    result = embedding

    def _hear(self, clip: np.ndarray) -> torch.Tensor:
        import warnings

        from omnisep.queries import normalize

        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # a short remainder's padding warning is for users' query files
            return normalize(self.encoder.embed("audio", [clip], sample_rate=self.rate)[0].float())


class ResidualTags(_ResidualWindows):
    """What a query leaves, as the sound tagger hears it (:meth:`tags`: ``[N]``, each bank label's
    probability, energy-weighted over the windows, or None when nothing audible was left); see
    :class:`_ResidualWindows`. ``verification``: a :class:`omnisep.scan.Verification` with a tagger,
    whose :meth:`~omnisep.scan.Verification.tag` hears mono 16 kHz audio (windows at other rates are
    resampled).

    Why: the scan tags the mixture, where the query's own sound is what the tagger hears most; in what
    the query leaves, that sound is turned down and the other one remains (docs/query-tools.md).
    """

    def __init__(self, verification, sample_rate: int, window_seconds: float = EVIDENCE_WINDOW_SECONDS):
        super().__init__(sample_rate, window_seconds)
        self.verification = verification

    def tags(self) -> np.ndarray | None:
        total = self._finish()
        return None if total is None else (total / self.weight).numpy().astype(np.float32)

    result = tags

    def _hear(self, clip: np.ndarray) -> torch.Tensor:
        from omnisep.audio import resample
        from omnisep.spectral import SAMPLE_RATE

        if self.rate != SAMPLE_RATE:
            clip = resample(clip, self.rate, SAMPLE_RATE)
        return torch.as_tensor(np.asarray(self.verification.tag(clip), dtype=np.float64))


class _EnergyMeter:
    """A writer that keeps only the sum of squares of what it is given."""

    def __init__(self):
        self.energy = 0.0

    def write(self, block) -> None:
        self.energy += float(np.sum(np.square(np.asarray(block, dtype=np.float64))))


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
