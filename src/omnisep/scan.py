"""Which of a model's labels sound in a recording, and when.

Every label of the checkpoint's query bank is separated from the recording at
once: the queries only weight the U-Net's k masks, so the whole bank costs one
U-Net pass per chunk. A label's separated energy, divided by the mixture's in
the same frame, says how much of what is heard there the model attributes to
that label; a ratio near 1 means "this is all that sounds", near 0 "absent".

That ratio is a weak witness on its own (the network gives part of every
sound to many queries), so a model may record a :class:`Verification`: the
sound tagger (:mod:`omnisep.tagger`, trained on mixtures) says how likely each
label is in the window, and/or the query encoder listens to what the most
likely labels separated; a label keeps its ratio only as far as they agree.
The ratio says *when*, the verification *what*.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from omnisep.errors import OmniSepError
from omnisep.spectral import SAMPLE_RATE

DEFAULT_FRAME_SECONDS = 0.5
# Best clip-level F1 of presence on the corpus's validation mixtures with the bundled model
# (docs/results/scan-presence/, scripts/evaluate_query_tools.sh); rerun that for another model.
DEFAULT_THRESHOLD = 0.425
PRESENCE_QUANTILE = 0.9  # a label heard in a tenth of the audible frames still counts
SILENCE_DB = -60.0  # frames this far below the loudest one carry no evidence
# Audio is streamed through the separator in blocks, so memory stays bounded by
# the separator's chunk size times the bank size, not by the file's length.
STREAM_BLOCK_SECONDS = 10.0
# Verification (see Verification): how many labels per window are listened to, and the window.
DEFAULT_VERIFY_TOP = 8
DEFAULT_VERIFY_WINDOW_SECONDS = 4.0
# The weight of a label not listened to in a window: its evidence stays far below any useful threshold
# (and below negatives.HEARD), yet the unheard labels still rank among themselves by their energy.
UNHEARD_WEIGHT = 1e-4


@dataclasses.dataclass
class ScanResult:
    """Per-label energy ratio over time and one presence score per label.

    ``energy_ratio[i, f]`` is label ``i``'s separated energy over the mixture's
    in frame ``f`` (0 where the mixture is silent, see ``audible``). When the
    scan was verified, ``evidence`` discounts it by how much the separated audio
    sounds like the label; presence and segments are read from ``evidence``.
    """

    labels: list[str]
    times: np.ndarray  # [F] start of each frame in seconds
    frame_seconds: float
    duration: float
    energy_ratio: np.ndarray  # [N, F] in [0, 1]
    audible: np.ndarray  # [F] bool
    presence: np.ndarray  # [N] in [0, 1]: the PRESENCE_QUANTILE of ``evidence`` over the audible frames
    evidence: np.ndarray | None = None  # [N, F]: energy_ratio times the window's verification weight
    similarity: np.ndarray | None = None  # [N, W] verification weight per window (None: not verified)
    window_starts: np.ndarray | None = None  # [W] seconds

    def __post_init__(self):
        if self.evidence is None:
            self.evidence = self.energy_ratio

    def ranking(self) -> list[int]:
        """Label indices, most present first (ties keep the bank's order)."""
        return sorted(range(len(self.labels)), key=lambda i: -float(self.presence[i]))

    def segments(self, index: int, threshold: float = DEFAULT_THRESHOLD) -> list[tuple[float, float]]:
        """Time spans (seconds) where the label's evidence reaches the threshold."""
        spans: list[tuple[float, float]] = []
        start = None
        hits = (self.evidence[index] >= threshold) & self.audible
        for f, hit in enumerate(hits):
            if hit and start is None:
                start = float(self.times[f])
            if not hit and start is not None:
                spans.append((start, float(self.times[f])))
                start = None
        if start is not None:
            spans.append((start, self.duration))
        return spans

    def to_dict(self, threshold: float = DEFAULT_THRESHOLD) -> dict:
        """JSON-ready summary, labels sorted by presence."""
        return {
            "format": "omnisep-scan",
            "format_version": 2,
            "verified": self.similarity is not None,
            "sample_rate": SAMPLE_RATE,
            "duration_seconds": round(self.duration, 4),
            "frame_seconds": self.frame_seconds,
            "threshold": threshold,
            "times": [round(float(t), 4) for t in self.times],
            **({} if self.window_starts is None else {"window_starts": [round(float(t), 4) for t in self.window_starts]}),
            "audible": [bool(a) for a in self.audible],
            "labels": [
                {
                    "label": self.labels[i],
                    "presence": round(float(self.presence[i]), 4),
                    "present": bool(self.presence[i] >= threshold),
                    "segments": [[round(a, 4), round(b, 4)] for a, b in self.segments(i, threshold)],
                    "energy_ratio": [round(float(r), 4) for r in self.energy_ratio[i]],
                    "evidence": [round(float(r), 4) for r in self.evidence[i]],
                    **({} if self.similarity is None else {"similarity": [round(float(w), 4) for w in self.similarity[i]]}),
                }
                for i in self.ranking()
            ],
        }


def _model_and_bank(source):
    """Accept a Separator or a loaded checkpoint: anything with ``model`` and ``bank``."""
    model = getattr(source, "model", None)
    bank = getattr(source, "bank", None)
    if model is None:
        raise TypeError(f"scan() needs a Separator or a loaded checkpoint, not {type(source).__name__}")
    if bank is None:
        raise OmniSepError("the model has no query bank, so there are no labels to scan for")
    return model, bank


def _mono_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    wave = np.asarray(audio, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=0)
    if wave.ndim != 1:
        raise ValueError(f"audio must be [C, T] or [T], got shape {tuple(np.shape(audio))}")
    if sample_rate != SAMPLE_RATE:
        from omnisep.audio import resample

        wave = resample(wave, sample_rate, SAMPLE_RATE)
    return np.ascontiguousarray(wave, dtype=np.float32)


def _frame_energies(samples: np.ndarray, frame: int) -> np.ndarray:
    """``[Q, frames]`` sums of squares of ``[Q, n]``; a short last frame counts the samples it has."""
    whole = samples.shape[1] // frame * frame
    # Squares in float32, sums in float64: no float64 copy of a [Q, n] block.
    parts = [np.square(samples[:, :whole].reshape(samples.shape[0], -1, frame)).sum(axis=-1, dtype=np.float64)]
    if samples.shape[1] > whole:
        parts.append(np.square(samples[:, whole:].astype(np.float64)).sum(axis=-1, keepdims=True))
    return np.concatenate(parts, axis=1)


def _audible(mixture_energy: np.ndarray, loudest: float) -> np.ndarray:
    """Frames that carry evidence: not digital silence, and within SILENCE_DB of the loudest."""
    return (mixture_energy > loudest * 10 ** (SILENCE_DB / 10)) & (mixture_energy > 1e-12)


def _energy_ratio(target_energy: np.ndarray, mixture_energy: np.ndarray, audible: np.ndarray) -> np.ndarray:
    """Each label's separated energy over the mixture's, per frame; 0 in frames without evidence."""
    ratio = np.zeros_like(target_energy)
    np.divide(target_energy, mixture_energy, out=ratio, where=audible[None, :])
    return ratio


@dataclasses.dataclass
class Verification:
    """Check what the scan separated before believing it, window by window.

    A label's separated energy alone ranks badly: the network hands some of
    every sound to many queries. Two witnesses can weigh it, each giving a
    label a weight in [0, 1] per window (a label's evidence is its energy
    ratio times the product):

    * **listening** (``listen``): the ``top`` labels with the most separated
      energy have their separated audio embedded by the model's own audio
      encoder, and each keeps its ratio in proportion to how much that audio
      resembles the label (cosine with the label's bank row, clipped at 0, to
      the ``power``); the other labels get :data:`UNHEARD_WEIGHT` there;
    * **the tagger** (``tagger``, :mod:`omnisep.tagger`): a classifier trained
      on mixtures hears the window's *mixture* once and gives each label its
      probability, to the ``tagger_power``. It knows the bank's labels by name.
    """

    encoder: object  # the Query-Net the model was trained with (Separator.encoder); unused when not listening
    rows: torch.Tensor  # the bank's normalised rows [N, D]
    top: int = DEFAULT_VERIFY_TOP
    window_seconds: float = DEFAULT_VERIFY_WINDOW_SECONDS
    power: float = 1.0
    listen: bool = True
    tagger: object | None = None  # omnisep.tagger.Tagger
    tagger_power: float = 1.0
    labels: list | None = None  # the bank's labels (needed with a tagger)

    def __post_init__(self):
        if self.tagger is None:
            if not self.listen:
                raise ValueError("a Verification that does not listen needs a tagger")
            return
        missing = [label for label in self.labels or [] if label not in self.tagger.labels]
        if self.labels is None or missing:
            raise OmniSepError(f"the tagger does not know the labels {', '.join(missing[:3]) or '(none given)'} of this model's bank")
        self._columns = torch.as_tensor([self.tagger.labels.index(label) for label in self.labels])
        from omnisep.encoders.backbones import load_sfx_cnn

        self._backbone = load_sfx_cnn()

    def describe(self) -> str:
        """One phrase for reports: which witnesses weigh the scan."""
        parts = []
        if self.listen:
            parts.append(f"the query encoder listened to the top {self.top} labels' separated audio (cosine^{self.power:g})")
        if self.tagger is not None:
            parts.append(f"the sound tagger heard the mixture (probability^{self.tagger_power:g})")
        return f"{' and '.join(parts)}, per {self.window_seconds:g} s window"

    def tag(self, mixture: np.ndarray) -> np.ndarray:
        """``[N]`` the tagger's probability of each bank label in a window of mono 16 kHz audio."""
        from omnisep.tagger import block_features

        with torch.inference_mode():
            pooling = getattr(self.tagger, "pooling", "embedding")
            logits = self.tagger.window_logits(block_features(self._backbone, mixture, pooling=pooling)[None])[0]
        return torch.sigmoid(logits[self._columns]).numpy().astype(np.float32)

    def weights(self, separated: np.ndarray, ratio: np.ndarray, live: np.ndarray, mixture: np.ndarray | None = None) -> np.ndarray:
        """``[N]`` weights of one window from its separated audio ``[N, n]``, frame ratios ``[N, F]`` and mixture ``[n]``."""
        if not live.any():
            return np.zeros(separated.shape[0], dtype=np.float32)  # silence: the ratios are 0 anyway
        weights = np.ones(separated.shape[0], dtype=np.float32)
        if self.listen:
            weights[:] = UNHEARD_WEIGHT
            presence = np.quantile(ratio[:, live], PRESENCE_QUANTILE, axis=1)
            top = np.argsort(-presence, kind="stable")[: self.top]
            with torch.inference_mode():
                heard = self.encoder.embed("audio", [separated[i] for i in top], sample_rate=SAMPLE_RATE)
            similarity = (heard * self.rows[torch.as_tensor(top)].to(heard.dtype)).sum(dim=1).numpy()
            weights[top] = np.clip(similarity, 0.0, 1.0) ** self.power
        if self.tagger is not None:
            if mixture is None:
                raise ValueError("a Verification with a tagger needs the window's mixture")
            weights = weights * self.tag(mixture) ** self.tagger_power
        return weights


class _Meter:
    """Frame energies (and, when verifying, window weights) of separated ``[Q, n]`` and mixture ``[n]`` blocks.

    Audio is cut into windows that start at multiples of the window length, so
    the same file gives the same numbers whatever the block sizes; the last
    window takes a remainder shorter than a quarter window instead of judging
    a sliver on its own.
    """

    def __init__(self, rows: int, frame: int, verification: Verification | None = None):
        self.frame, self.verification = frame, verification
        seconds = verification.window_seconds if verification is not None else STREAM_BLOCK_SECONDS
        self.window = frame * max(1, round(seconds * SAMPLE_RATE / frame))
        self.targets = np.zeros((rows, 0), dtype=np.float32)
        self.mixture = np.zeros(0, dtype=np.float32)
        self.target_energy: list[np.ndarray] = []
        self.mixture_energy: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []  # [N] per window
        self.window_frames: list[int] = []

    def add(self, targets: np.ndarray, mixture: np.ndarray) -> None:
        self.targets = np.concatenate([self.targets, np.asarray(targets, dtype=np.float32)], axis=1)
        self.mixture = np.concatenate([self.mixture, np.asarray(mixture, dtype=np.float32).reshape(-1)])
        while self.mixture.size >= self.window + self.window // 4:
            self._close_window(self.window)

    def _close_window(self, length: int) -> None:
        targets, mixture = self.targets[:, :length], self.mixture[:length]
        target_energy = _frame_energies(targets, self.frame)
        mixture_energy = _frame_energies(mixture[None], self.frame)[0]
        if self.verification is not None:
            live = _audible(mixture_energy, float(mixture_energy.max()))  # this window's own silence
            self.weights.append(self.verification.weights(targets, _energy_ratio(target_energy, mixture_energy, live), live, mixture))
        self.target_energy.append(target_energy)
        self.mixture_energy.append(mixture_energy)
        self.window_frames.append(mixture_energy.size)
        # Copies, not views that keep the whole buffer alive.
        self.targets, self.mixture = self.targets[:, length:].copy(), self.mixture[length:].copy()

    def close(self, labels, n_samples: int) -> ScanResult:
        if self.mixture.size:
            self._close_window(self.mixture.size)
        rows = self.targets.shape[0]
        targets = np.concatenate(self.target_energy, axis=1) if self.target_energy else np.zeros((rows, 0))
        mixture = np.concatenate(self.mixture_energy) if self.mixture_energy else np.zeros(0)
        weights = None
        if self.verification is not None:
            weights = np.stack(self.weights, axis=1) if self.weights else np.zeros((rows, 0), np.float32)
        return _result(labels, targets, mixture, self.frame, n_samples, weights, self.window_frames)


def _scanned_rows(bank, labels) -> tuple[list[str], torch.Tensor]:
    """The bank's labels to scan for, in the bank's order, and their normalised rows: all of them, or those named.
    A label's numbers do not depend on which others are scanned (unless the verification listens: it hears the top
    few of those scanned), so a scan of a few costs a few U-Net passes, not one per label of the bank."""
    from omnisep.queries import normalize

    rows = normalize(torch.as_tensor(bank.embeddings, dtype=torch.float32))
    if labels is None:
        return list(bank.labels), rows
    wanted = set(labels)
    unknown = sorted(wanted - set(bank.labels))
    if unknown:
        raise OmniSepError(f"the model's bank has no label {unknown[0]!r} to scan for")
    chosen = [i for i, label in enumerate(bank.labels) if label in wanted]
    return [bank.labels[i] for i in chosen], rows[torch.as_tensor(chosen)]


def _frame_samples(frame_seconds: float) -> int:
    """The scan's frame length in 16 kHz samples (at least one); a frame that is not positive is refused."""
    if not frame_seconds > 0:
        raise OmniSepError(f"the frame length must be positive, got {frame_seconds} s")
    return max(1, round(frame_seconds * SAMPLE_RATE))


class ScanStream:
    """Scan audio that arrives in blocks: mono 16 kHz samples in, a :class:`ScanResult` at the end.

    Holds about one separator chunk and one scan window of audio plus a few
    numbers per (label, frame), so an hour costs the memory of a minute (the
    per-frame arrays grow by ``labels x 8`` bytes per frame).
    """

    def __init__(self, separator_or_model, frame_seconds: float = DEFAULT_FRAME_SECONDS, verify: bool | Verification = True,
                 labels=None):
        from omnisep.apply import ChunkedSeparator

        self.frame = _frame_samples(frame_seconds)
        self.model, self.bank = _model_and_bank(separator_or_model)
        self.labels, queries = _scanned_rows(self.bank, labels)
        verification = verification_for(separator_or_model, labels=self.labels) if verify is True else (verify or None)
        # ChunkedSeparator is separate_tensor's engine: one U-Net pass per chunk for
        # the whole bank; fed block by block, it never holds [Q, T] for the file.
        self._was_training = self.model.training
        self.model.eval()  # BatchNorm must use its running statistics
        self.engine = ChunkedSeparator(self.model, queries, signals=1)
        self.meter = _Meter(len(self.labels), self.frame, verification)
        self.pending = np.zeros(0, dtype=np.float32)  # mixture samples whose separation has not come out yet
        self.samples = 0

    def _add(self, separated: np.ndarray) -> None:
        n = separated.shape[1]
        self.meter.add(separated, self.pending[:n])
        self.pending = self.pending[n:].copy()

    def push(self, wave: np.ndarray) -> None:
        """Add mono 16 kHz samples ``[n]``."""
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        step = max(1, round(STREAM_BLOCK_SECONDS * SAMPLE_RATE))
        for start in range(0, wave.size, step):
            block = wave[start : start + step]
            self.pending = np.concatenate([self.pending, block])
            self._add(self.engine.push(block[None])[:, 0])
        self.samples += wave.size

    def finish(self) -> ScanResult:
        try:
            self._add(self.engine.finish()[:, 0])
        finally:
            self.model.train(self._was_training)
        return self.meter.close(self.labels, self.samples)


def _result(labels, target_energy, mixture_energy, frame, n_samples, weights=None, window_frames=()) -> ScanResult:
    n_frames = mixture_energy.size
    audible = _audible(mixture_energy, float(mixture_energy.max()) if n_frames else 0.0)
    ratio = np.clip(_energy_ratio(target_energy, mixture_energy, audible), 0.0, 1.0)
    evidence = ratio if weights is None else ratio * np.repeat(weights, list(window_frames), axis=1)
    if audible.any():
        presence = np.quantile(evidence[:, audible], PRESENCE_QUANTILE, axis=1)
    else:
        presence = np.zeros(len(labels))
    return ScanResult(
        labels=list(labels),
        times=np.arange(n_frames) * frame / SAMPLE_RATE,
        frame_seconds=frame / SAMPLE_RATE,
        duration=n_samples / SAMPLE_RATE,
        energy_ratio=ratio.astype(np.float32),
        audible=audible,
        presence=presence.astype(np.float32),
        evidence=evidence.astype(np.float32),
        similarity=None if weights is None else weights.astype(np.float32),
        window_starts=None if weights is None else np.cumsum([0, *window_frames[:-1]]) * frame / SAMPLE_RATE,
    )


def scan_estimates(
    labels,
    estimates: np.ndarray,
    mixture: np.ndarray,
    frame_seconds: float = DEFAULT_FRAME_SECONDS,
    verification: Verification | None = None,
) -> ScanResult:
    """:func:`scan`'s result from every label's estimate ``[N, T]`` of a mono 16 kHz ``mixture [T]``, already separated.

    For callers that need the estimates as well (evaluation): given what :func:`scan`'s
    engine separates (``apply.separate_tensor`` of the bank's normalised rows) and the
    same verification, the result is :func:`scan`'s, number for number.
    """
    meter = _Meter(len(labels), _frame_samples(frame_seconds), verification)
    meter.add(np.asarray(estimates, dtype=np.float32), np.asarray(mixture, dtype=np.float32).reshape(-1))
    return meter.close(labels, np.asarray(mixture).size)


def verification_for(source, path=None, labels=None) -> Verification | None:
    """The model's recorded verification (``inference.scan.verify``) with its encoder, or None when it records none.

    A Separator lends its encoder; a bare checkpoint gets the one it was trained with. ``labels``: verify only
    these of the bank's labels (a scan of a few, :class:`ScanStream`)."""
    config = getattr(source, "config", None)
    if not config:
        return None
    from omnisep.states import scan_settings

    setting = scan_settings(config, path or getattr(source, "path", "the model"))["verify"]
    if setting is None:
        return None
    setting = {key: value for key, value in setting.items() if key != "threshold"}
    _, bank = _model_and_bank(source)
    scanned, rows = _scanned_rows(bank, labels)
    if "tagger_power" in setting:
        from omnisep.tagger import load_tagger

        setting.update(tagger=load_tagger(), labels=scanned)
    encoder = getattr(source, "encoder", None)
    if encoder is None and setting.get("listen", True):
        from omnisep.encoders import recorded_encoder
        from omnisep.states import check_encoder

        encoder = recorded_encoder(config["encoder"])
        check_encoder(config, encoder.identity())
    return Verification(encoder, rows, **setting)


def scan(
    separator_or_model,
    audio: np.ndarray,
    sample_rate: int,
    frame_seconds: float = DEFAULT_FRAME_SECONDS,
    verify: bool | Verification = True,
    labels=None,
) -> ScanResult:
    """Separate every bank label (or the ``labels`` named) from ``audio`` and score its presence per frame.

    ``verify``: True applies the model's recorded :class:`Verification` (if it
    records one), False skips it (faster, ranks less well), or pass one.
    """
    stream = ScanStream(separator_or_model, frame_seconds, verify, labels)
    stream.push(_mono_16k(audio, sample_rate))
    return stream.finish()


class MixtureTags:
    """The sound tagger's probability of each label anywhere in a recording: the largest over its windows.

    Why: Query-Aug asks "could this recording hold a cello?" of the labels an unsure picture or description
    could be. One tagger pass over the mixture answers for every label at once, where a scan separates each
    label asked about; and as that evidence it did at least as well on validation (docs/encoders.md). Windows
    start at multiples of the window length (the verification's, unless ``window_seconds`` is given) and the
    last takes a remainder shorter than a quarter window, as the scan's, so the answer does not depend on the
    block sizes pushed.
    """

    def __init__(self, verification: Verification, window_seconds: float | None = None):
        if verification.tagger is None:
            raise ValueError("MixtureTags needs a Verification with a tagger")
        self.verification = verification
        self.window = max(1, round((window_seconds or verification.window_seconds) * SAMPLE_RATE))
        self.buffer = np.zeros(0, dtype=np.float32)
        self.best: np.ndarray | None = None

    def push(self, wave: np.ndarray) -> None:
        """More mono 16 kHz audio."""
        self.buffer = np.concatenate([self.buffer, np.asarray(wave, dtype=np.float32).reshape(-1)])
        while self.buffer.size >= self.window + self.window // 4:
            self._close(self.window)

    def _close(self, length: int) -> None:
        tags = self.verification.tag(self.buffer[:length])
        self.best = tags if self.best is None else np.maximum(self.best, tags)
        self.buffer = self.buffer[length:].copy()

    def finish(self) -> dict[str, float]:
        """``{label: probability}`` for the verification's labels (all 0 for an empty recording)."""
        if self.buffer.size:
            self._close(self.buffer.size)
        best = self.best if self.best is not None else np.zeros(len(self.verification.labels), dtype=np.float32)
        return {label: float(value) for label, value in zip(self.verification.labels, best)}


def mixture_tags(verification: Verification, audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """:class:`MixtureTags` of ``audio`` (``[C, T]`` or ``[T]`` at ``sample_rate``)."""
    tags = MixtureTags(verification)
    tags.push(_mono_16k(audio, sample_rate))
    return tags.finish()


def mixture_tags_file(verification: Verification, path: str | os.PathLike) -> dict[str, float]:
    """:func:`mixture_tags` of a file of any length, decoded and resampled block by block (flat memory)."""
    tags = MixtureTags(verification)
    _stream_mono_16k(path, tags.push)
    return tags.finish()


def _stream_mono_16k(path, push, on_input=None) -> None:
    """Decode ``path`` block by block and hand ``push`` its mono 16 kHz audio."""
    import soxr

    from omnisep.audio import AudioReader

    reader = AudioReader(path)
    try:
        down = None
        if reader.sample_rate != SAMPLE_RATE:
            down = soxr.ResampleStream(reader.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="VHQ")
        for block in reader:
            mono = np.asarray(block, dtype=np.float32).mean(axis=0)
            push(mono if down is None else down.resample_chunk(mono, last=False))
            if on_input is not None:
                on_input(block.shape[1])
        if down is not None:
            push(down.resample_chunk(np.zeros(0, np.float32), last=True))
    finally:
        reader.close()


def scan_file(
    separator_or_model,
    path: str | os.PathLike,
    frame_seconds: float = DEFAULT_FRAME_SECONDS,
    on_input=None,
    verify: bool | Verification = True,
    labels=None,
) -> ScanResult:
    """:func:`scan` of a file of any length, decoded and resampled block by block (flat memory).

    ``on_input`` is called with each decoded block's length in input samples
    (a progress bar). The result equals :func:`scan` on the loaded file.
    """
    stream = ScanStream(separator_or_model, frame_seconds, verify, labels)
    _stream_mono_16k(path, stream.push, on_input)
    return stream.finish()
