"""Separation metrics as the paper computes them, plus a fast equivalent.

What the paper's evaluation passes to BSSEval v4 (``museval.metrics.bss_eval``),
for one test item whose mixture is ``target + interferer`` (both already
divided by the number of sources):

* ``reference_sources = [target, interferer]`` (2 x L, mono),
* ``estimated_sources = [estimate, mixture - estimate]`` (the second row is
  what the complementary mask ``1 - m`` gives through the same iSTFT, which is
  linear, so it equals the mixture minus the estimate),
* ``window = hop = L`` (one window over the whole item), 512-tap distortion
  filters, no permutation search, the ``bss_eval_images`` criteria (museval's
  default; for a mono signal its SDR is the plain signal-to-error ratio
  ``10 log10(|s|^2 / |s_hat - s|^2)``).

Only the first row (the target) is kept: SDR, SIR, SAR. The unprocessed
mixture is scored the same way with ``estimated_sources = [mixture, mixture]``;
SDRi = SDR - SDR(mixture). Every ratio is capped at ``CEILING_DB`` (100 dB),
above which it is numerical noise. Everything is cut to the first ``SCORED_LENGTH``
samples (the iSTFT output length of a 65,535-sample item). An item is skipped
(and counted) when the target, the interferer, the estimate or its complement
is near-silent (sum of |x| <= 1e-5), the paper's rule.

The ``fast`` backend gives the same numbers much faster: SIR and SAR do not
depend on which BSSEval variant is used (both project the estimate on the
delayed references the same way), so they come from ``fast_bss_eval``; the SDR
of the images variant needs no projection and is computed directly.
``fast_bss_eval`` 0.1.4's numpy path fails under numpy 2, so its torch path is
used, in float64.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from omnisep.errors import OmniSepError

SCORED_LENGTH = 65280
SILENCE_SUM_ABS = 1e-5
FILTER_LENGTH = 512
BACKENDS = ("museval", "fast")
# Above this a ratio is numerical noise: the mixture's SAR, for one, is infinite in
# theory (the mixture lies in the span of the references) and comes out as ~250 dB
# from museval, ~150 dB or inf from fast-bss-eval. Both backends cap at this value.
CEILING_DB = 100.0


@dataclasses.dataclass(frozen=True)
class ItemScore:
    """Metrics of one separated target, in dB, with the mixture's for reference."""

    sdr: float
    sir: float
    sar: float
    si_sdr: float
    sdr_mix: float
    sir_mix: float
    sar_mix: float
    si_sdr_mix: float

    @property
    def sdri(self) -> float:
        return self.sdr - self.sdr_mix

    @property
    def si_sdri(self) -> float:
        return self.si_sdr - self.si_sdr_mix

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["sdri"] = self.sdri
        values["si_sdri"] = self.si_sdri
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "ItemScore":
        return cls(**{field.name: float(values[field.name]) for field in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class MixtureScore:
    """The unprocessed mixture's metrics: query-independent, so computed once per item."""

    sdr: float
    sir: float
    sar: float
    si_sdr: float


def _as_signal(x, name: str) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 1:
        array = np.squeeze(array)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a mono signal, got shape {np.shape(x)}")
    return array


def _crop(signals: Sequence[np.ndarray], length: int) -> list[np.ndarray]:
    n = min(length, *(len(s) for s in signals))
    return [s[:n] for s in signals]


def is_silent(x: np.ndarray) -> bool:
    """The paper's validity rule: a signal whose absolute sum is tiny is not scored."""
    return float(np.sum(np.abs(x))) <= SILENCE_SUM_ABS


def _cap(value: float) -> float:
    return min(float(value), CEILING_DB)


def si_sdr(reference, estimate) -> float:
    """Scale-invariant SDR (Le Roux et al. 2019), zero-mean, in dB."""
    s = _as_signal(reference, "reference")
    e = _as_signal(estimate, "estimate")
    s = s - s.mean()
    e = e - e.mean()
    energy = float(np.dot(s, s))
    if energy == 0.0:
        return float("nan")
    target = (float(np.dot(e, s)) / energy) * s
    noise = e - target
    noise_energy = float(np.dot(noise, noise))
    if noise_energy == 0.0:
        return CEILING_DB
    return _cap(10.0 * math.log10(float(np.dot(target, target)) / noise_energy))


def _images_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """BSSEval v4 (images variant) SDR of a mono source: no filtering allowed."""
    error = float(np.sum((estimate - reference) ** 2))
    if error == 0.0:
        return float("inf")
    return 10.0 * math.log10(float(np.sum(reference**2)) / error)


def require_backend(backend: str) -> None:
    """Name a missing optional dependency before any work: museval is the extra ``omnisep[eval]``."""
    import importlib.util

    if backend == "museval" and importlib.util.find_spec("museval") is None:
        raise OmniSepError(
            "the museval metrics backend needs the museval package: pip install 'omnisep[eval]' "
            "(it also wants FFmpeg on the system), or use --backend fast."
        )


def bss_eval_target(references: np.ndarray, estimates: np.ndarray, backend: str = "museval") -> tuple[float, float, float]:
    """SDR, SIR, SAR of the first estimate against the first reference (rows: sources), capped at CEILING_DB."""
    return tuple(_cap(value) for value in _bss_eval_target(references, estimates, backend))


def _scorable_bss_eval(references: np.ndarray, estimates: np.ndarray, backend: str) -> tuple[float, float, float] | None:
    """None when the references are linearly dependent (a target equal to its interferer): skipped, not a crash."""
    import torch

    try:
        return bss_eval_target(references, estimates, backend)
    except (np.linalg.LinAlgError, torch.linalg.LinAlgError):
        return None


def _bss_eval_target(references: np.ndarray, estimates: np.ndarray, backend: str) -> tuple[float, float, float]:
    if backend == "museval":
        import museval.metrics

        n = references.shape[1]
        sdr, _isr, sir, sar, _perm = museval.metrics.bss_eval(
            references,
            estimates,
            window=n,
            hop=n,
            compute_permutation=False,
            filters_len=FILTER_LENGTH,
            framewise_filters=False,
            bsseval_sources_version=False,
        )
        return float(sdr[0, 0]), float(sir[0, 0]), float(sar[0, 0])
    if backend == "fast":
        import fast_bss_eval
        import torch

        # Its batched LU solve fails (MKL: "Pivots given to lu_solve ...") or
        # hangs when MKL runs multi-threaded on some CPUs; one thread is safe
        # and these 512x512 systems gain nothing from more.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _sdr_sources, sir, sar = fast_bss_eval.bss_eval_sources(
                torch.from_numpy(np.ascontiguousarray(references, dtype=np.float64)),
                torch.from_numpy(np.ascontiguousarray(estimates, dtype=np.float64)),
                filter_length=FILTER_LENGTH,
                compute_permutation=False,
            )
        finally:
            torch.set_num_threads(threads)
        return _images_sdr(references[0], estimates[0]), float(sir[0]), float(sar[0])
    raise ValueError(f"unknown metrics backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def score_mixture(target, interferer, mixture, backend: str = "museval", length: int = SCORED_LENGTH) -> MixtureScore | None:
    """Score the unprocessed mixture as an estimate of the target; None when not scorable."""
    t, i, m = _crop([_as_signal(target, "target"), _as_signal(interferer, "interferer"), _as_signal(mixture, "mixture")], length)
    if is_silent(t) or is_silent(i) or is_silent(m):
        return None
    scores = _scorable_bss_eval(np.stack([t, i]), np.stack([m, m]), backend)
    if scores is None:
        return None
    sdr, sir, sar = scores
    return MixtureScore(sdr=sdr, sir=sir, sar=sar, si_sdr=si_sdr(t, m))


def score_estimate(
    target,
    interferer,
    mixture,
    estimate,
    mixture_score: MixtureScore,
    backend: str = "museval",
    length: int = SCORED_LENGTH,
) -> ItemScore | None:
    """Score one separated target; None (skip, to be counted) when near-silent."""
    t, i, m, e = _crop(
        [
            _as_signal(target, "target"),
            _as_signal(interferer, "interferer"),
            _as_signal(mixture, "mixture"),
            _as_signal(estimate, "estimate"),
        ],
        length,
    )
    complement = m - e
    if is_silent(t) or is_silent(i) or is_silent(e) or is_silent(complement):
        return None
    scores = _scorable_bss_eval(np.stack([t, i]), np.stack([e, complement]), backend)
    if scores is None:
        return None
    sdr, sir, sar = scores
    return ItemScore(
        sdr=sdr,
        sir=sir,
        sar=sar,
        si_sdr=si_sdr(t, e),
        sdr_mix=mixture_score.sdr,
        sir_mix=mixture_score.sir,
        sar_mix=mixture_score.sar,
        si_sdr_mix=mixture_score.si_sdr,
    )


@dataclasses.dataclass(frozen=True)
class Summary:
    """Mean +- standard error of the mean, and median, as the paper reports them."""

    mean: float
    sem: float
    median: float
    count: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    """Mean, SEM (scipy.stats.sem, ddof=1) and median; NaN where there are too few values."""
    import scipy.stats

    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        return Summary(float("nan"), float("nan"), float("nan"), 0)
    sem = float(scipy.stats.sem(array)) if array.size > 1 else float("nan")
    return Summary(float(np.mean(array)), sem, float(np.median(array)), int(array.size))
