"""Training mixtures made on the training device from clips held in its memory ("resident" pipeline).

The file pipeline (:mod:`omnisep.data.mixing`) decodes and mixes each example
in Python worker processes, which caps a GPU at a few hundred mixtures per
second and costs most of a CPU step. Here every training clip is decoded
once into one flat tensor on the device; a batch is a handful of tensor
operations (gathers, FFT convolutions, sums).

The mixtures look like use, not like the paper's fixed two-source sums:

* 1 to ``max_sources`` sources of distinct classes;
* the queried sound at a target-to-rest ratio drawn from a range (dB), or,
  with probability ``absent_prob``, a class that is *not* in the mixture,
  whose target is silence;
* reverberation (a synthetic exponentially decaying room response per
  source), background noise (white to brown) and the overall level vary;
* optionally, the text query is now and then another wording of the class
  (a synonym, a WordNet gloss, a description) instead of its label.

Every random choice comes from ``(seed, step)``, drawn on the CPU, so a
resumed run (and every process of a distributed one) sees the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F

from omnisep.data.manifest import ManifestItem
from omnisep.data.mixing import MODALITIES
from omnisep.errors import OmniSepError
from omnisep.spectral import SAMPLE_RATE

RIR_SECONDS = 0.5

# The random EQ's control points: log-spaced from EQ_LOW_HZ to the Nyquist frequency.
EQ_POINTS = 8
EQ_LOW_HZ = 60.0
TEXT_ROW = MODALITIES.index("text")
IMAGE_ROW = MODALITIES.index("image")
SILENT_RMS = 1e-4


def fast_fft_size(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n`` (scipy's ``next_fast_len`` for real input): a linear convolution is
    exact at any FFT size of at least ``n``, and at the training crop plus a room response (73,535 = 5 x 14,707)
    the plain size took the FFT library eight times as long as the next such size (73,728): a sixth of a
    training step of the resident pipeline."""
    return scipy.fft.next_fast_len(n, real=True)


@dataclass
class MixingSection:
    """How the resident pipeline draws training mixtures (``[mixing]`` in a training config)."""

    source_weights: list = field(default_factory=lambda: [0.2, 0.5, 0.3])  # P(1 source), P(2), P(3), ...
    absent_prob: float = 0.15
    target_to_rest_db: list = field(default_factory=lambda: [-10.0, 10.0])
    reverb_prob: float = 0.25
    rt60_s: list = field(default_factory=lambda: [0.15, 0.8])
    noise_prob: float = 0.3
    noise_snr_db: list = field(default_factory=lambda: [5.0, 30.0])
    level_db: list = field(default_factory=lambda: [-35.0, -12.0])  # mixture RMS, dB re full scale
    # Timbre: a smooth random EQ per source (gains at EQ_POINTS log-spaced frequencies, within
    # +-eq_db), so the network hears each class through other instruments and recording chains.
    eq_prob: float = 0.0
    eq_db: float = 6.0

    def validate(self, fail) -> None:
        weights = self.source_weights
        if not weights or any(not isinstance(w, (int, float)) or w < 0 for w in weights) or sum(weights) <= 0:
            fail("mixing.source_weights must be non-negative numbers with a positive sum.")
        for name in ("absent_prob", "reverb_prob", "noise_prob", "eq_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                fail(f"mixing.{name} must be between 0 and 1, got {value}.")
        for name in ("target_to_rest_db", "rt60_s", "noise_snr_db", "level_db"):
            value = getattr(self, name)
            if len(value) != 2 or not all(isinstance(v, (int, float)) for v in value) or value[0] > value[1]:
                fail(f"mixing.{name} must be a range [low, high], got {value}.")
        if self.rt60_s[0] <= 0:
            fail("mixing.rt60_s must be positive.")
        if not isinstance(self.eq_db, (int, float)) or not 0.0 <= self.eq_db <= 24.0:
            fail(f"mixing.eq_db must be between 0 and 24 dB, got {self.eq_db}.")


class ClipBank:
    """All clips in one flat float tensor; crops wrap around (short clips are tiled)."""

    def __init__(self, clips: Sequence[np.ndarray], device: torch.device):
        if not clips:
            raise OmniSepError("The resident pipeline has no training clips.")
        lengths = np.array([len(clip) for clip in clips], dtype=np.int64)
        if (lengths == 0).any():
            raise OmniSepError("A training clip is empty.")
        self.offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]])).to(device)
        self.lengths = torch.from_numpy(lengths).to(device)
        self.samples = torch.from_numpy(np.concatenate(clips).astype(np.float32)).to(device)

    def crops(self, clip: torch.Tensor, start: torch.Tensor, length: int) -> torch.Tensor:
        """``clip``, ``start`` of any shape ``S`` -> ``S + [length]`` samples, wrapping inside each clip."""
        steps = torch.arange(length, device=self.samples.device)
        position = (start.unsqueeze(-1) + steps) % self.lengths[clip].unsqueeze(-1)
        return self.samples[self.offsets[clip].unsqueeze(-1) + position]


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(-1).sqrt()


def _db(value):
    return 10.0 ** (np.asarray(value) / 20.0)


class _Variants:
    """Other queries of each label (wordings, pictures): one flat table and, per label, the rows that are its own."""

    def __init__(self, labels: list[str], tables: dict[str, torch.Tensor] | None, prob: float, device, what: str):
        self.prob = float(prob) if tables else 0.0
        self.first = np.zeros(len(labels), np.int64)
        self.count = np.zeros(len(labels), np.int64)
        if self.prob <= 0:
            return
        known = [label for label in labels if label in tables and len(tables[label])]
        if not known:
            raise OmniSepError(f"The {what} has no entry for any training class; check its labels.")
        rows = [F.normalize(tables[label].float(), dim=-1) for label in known]
        self.rows = torch.cat(rows).to(device)
        offset = 0
        for label, table in zip(known, rows):
            self.first[labels.index(label)], self.count[labels.index(label)] = offset, len(table)
            offset += len(table)

    def swap(self, parts: torch.Tensor, row: int, labels: np.ndarray, use: np.ndarray, pick: np.ndarray) -> torch.Tensor:
        """``parts`` with modality ``row`` replaced where ``use`` (and the label has variants) by variant ``pick``."""
        if self.prob <= 0:
            return parts
        use = use & (self.count[labels] > 0)
        if not use.any():
            return parts
        chosen = self.rows[torch.from_numpy(self.first[labels] + pick % np.maximum(self.count[labels], 1)).to(parts.device)]
        parts = parts.clone()
        mask = torch.from_numpy(use).to(parts.device).unsqueeze(-1)
        parts[:, row] = torch.where(mask, chosen, parts[:, row])
        return parts


class ResidentMixer:
    """``batch(step, positions)`` -> mixtures ``[B, T]``, targets ``[B, 1, T]``, queries ``[B, 1, D]`` on the device."""

    def __init__(
        self,
        items: Sequence[ManifestItem],
        clips: Sequence[np.ndarray],
        embeddings: torch.Tensor,
        available: torch.Tensor,
        mixing: MixingSection,
        segment_samples: int,
        seed: int,
        device: torch.device,
        global_batch: int,
        text_variants: dict[str, torch.Tensor] | None = None,
        text_variant_prob: float = 0.0,
        negative_alpha: Sequence[float] | None = None,
        image_variants: dict[str, torch.Tensor] | None = None,
        image_variant_prob: float = 0.0,
    ):
        """``text_variants``: label -> ``[n, D]`` other wordings of it, used with ``text_variant_prob``;
        ``image_variants``: label -> ``[n, D]`` other pictures of it (other artists), with ``image_variant_prob``.
        ``negative_alpha`` ``(low, high)``: batches also carry a negative query per mixture (see :meth:`batch`)."""
        self.negative_alpha = None if negative_alpha is None else (float(negative_alpha[0]), float(negative_alpha[1]))
        self.device = device
        self.mixing = mixing
        self.segment = int(segment_samples)
        self.seed = int(seed)
        self.global_batch = int(global_batch)
        self.bank = ClipBank(clips, device)
        labels = sorted({item.label for item in items})
        self.label_of_item = np.array([labels.index(item.label) for item in items])
        self.items_of_label = [np.flatnonzero(self.label_of_item == n) for n in range(len(labels))]
        self.n_labels = len(labels)
        weights = np.asarray(mixing.source_weights, dtype=np.float64)
        self.max_sources = min(len(weights), self.n_labels - 1 if mixing.absent_prob > 0 else self.n_labels)
        if self.max_sources < 1:
            raise OmniSepError("The resident pipeline needs at least two classes.")
        weights = weights[: self.max_sources]
        self.source_probs = weights / weights.sum()
        self.parts = F.normalize(embeddings.float(), dim=-1).to(device) * available.unsqueeze(-1).to(device)
        self.available = available.to(device)
        if not self.available.any(-1).all():
            raise OmniSepError("An item of the resident pipeline has no query embedding for the configured modalities.")
        self.text_variants = _Variants(labels, text_variants, text_variant_prob, device, "text bank")
        self.image_variants = _Variants(labels, image_variants, image_variant_prob, device, "picture bank")

    # -- the random plan of a step, drawn on the CPU ---------------------------------------------

    def _plan(self, step: int) -> dict:
        rng = np.random.default_rng([self.seed, int(step), 7])
        batch, most = self.global_batch, self.max_sources
        counts = rng.choice(np.arange(1, most + 1), size=batch, p=self.source_probs)
        absent = rng.random(batch) < self.mixing.absent_prob
        clips = np.zeros((batch, most), np.int64)
        used = np.zeros((batch, most), bool)
        query_item = np.zeros(batch, np.int64)
        for b in range(batch):
            chosen_labels = rng.choice(self.n_labels, size=counts[b] + 1, replace=False)
            for s, label in enumerate(chosen_labels[: counts[b]]):
                options = self.items_of_label[label]
                clips[b, s] = options[rng.integers(len(options))]
                used[b, s] = True
            query_label = chosen_labels[counts[b]] if absent[b] else chosen_labels[0]
            if absent[b]:
                options = self.items_of_label[query_label]
                query_item[b] = options[rng.integers(len(options))]
            else:
                query_item[b] = clips[b, 0]
        m = self.mixing
        return {
            "clips": clips,
            "used": used,
            "absent": absent,
            "query_item": query_item,
            "start": rng.integers(0, 2**62, size=(batch, most)),
            "ratio_db": rng.uniform(*m.target_to_rest_db, size=batch),
            "other_db": rng.uniform(-3.0, 3.0, size=(batch, most)),
            "reverb": rng.random((batch, most)) < m.reverb_prob,
            "rt60": rng.uniform(*m.rt60_s, size=(batch, most)),
            "noise": rng.random(batch) < m.noise_prob,
            "noise_snr_db": rng.uniform(*m.noise_snr_db, size=batch),
            "noise_tilt": rng.uniform(0.0, 2.0, size=batch),  # 0 white, 1 pink, 2 brown
            "level_db": rng.uniform(*m.level_db, size=batch),
            "mixup": rng.random((batch, self.parts.shape[1])),
            # Drawn last, so plans without text variants are the ones earlier runs saw.
            "text_variant": rng.random(batch) < self.text_variants.prob,
            "variant_pick": rng.integers(0, 2**31, size=batch),
            # Drawn after everything else, so runs without negative queries keep their batches.
            "negative_mixup": rng.random((batch, self.parts.shape[1])),
            "negative_u": rng.random(batch),
            # Drawn after that, so runs without the EQ keep their batches too.
            "eq": rng.random((batch, most)) < m.eq_prob,
            "eq_gain_db": rng.uniform(-m.eq_db, m.eq_db, size=(batch, most, EQ_POINTS)),
            # And the picture variants last of all.
            "image_variant": rng.random(batch) < self.image_variants.prob,
            "image_pick": rng.integers(0, 2**31, size=batch),
        }

    # -- the batch, on the device -------------------------------------------------------------------

    def _noise_source(self, step: int, salt: int, shape: tuple, rows: np.ndarray) -> torch.Tensor:
        """Gaussian noise of the whole global batch from ``(seed, step, salt)``, made on the device; this process's rows."""
        seed = int(np.random.default_rng([self.seed, int(step), salt]).integers(2**62))
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return torch.randn((self.global_batch, *shape), generator=generator, device=self.device)[torch.from_numpy(rows).to(self.device)]

    def batch(self, step: int, positions: Sequence[int]) -> dict:
        plan = self._plan(step)
        rows = np.asarray(list(positions), dtype=np.int64)
        take = {key: value[rows] for key, value in plan.items()}
        take["step"], take["rows"] = int(step), rows
        device, length = self.device, self.segment
        clips = torch.from_numpy(take["clips"]).to(device)
        used = torch.from_numpy(take["used"]).to(device)
        lengths = self.bank.lengths[clips]
        start = torch.from_numpy(take["start"] % 2**31).to(device) % lengths
        sources = self.bank.crops(clips, start, length) * used.unsqueeze(-1)  # [B, S, T]
        # Unit RMS per source (silent crops stay silent), then the target-to-rest ratio.
        rms = _rms(sources)
        sources = sources / rms.clamp_min(SILENT_RMS).unsqueeze(-1) * (rms > SILENT_RMS).unsqueeze(-1)
        sources = self._equalise(sources, take)
        gains = torch.from_numpy(_db(take["other_db"])).float().to(device) * used
        sources = sources * gains.unsqueeze(-1)
        sources = self._reverberate(sources, take)
        target = sources[:, 0]
        rest = sources[:, 1:].sum(1)
        target_rms, rest_rms = _rms(target), _rms(rest)
        ratio = torch.from_numpy(_db(take["ratio_db"])).float().to(device)
        has_rest = rest_rms > SILENT_RMS
        scale = torch.where(has_rest, target_rms.clamp_min(SILENT_RMS) / (ratio * rest_rms.clamp_min(SILENT_RMS)), torch.ones_like(ratio))
        rest = rest * scale.unsqueeze(-1)
        rest = rest + self._noise(target + rest, take)
        absent = torch.from_numpy(take["absent"]).to(device)
        mixture = target + rest
        # The overall level, then keep the peak inside full scale.
        level = torch.from_numpy(_db(take["level_db"])).float().to(device) / _rms(mixture).clamp_min(SILENT_RMS)
        peak = (mixture * level.unsqueeze(-1)).abs().amax(-1)
        level = level * torch.where(peak > 0.99, 0.99 / peak.clamp_min(1e-9), torch.ones_like(peak))
        mixture = mixture * level.unsqueeze(-1)
        # An absent query's target is silence: its class is not in the mixture at all.
        target = target * level.unsqueeze(-1) * (~absent).unsqueeze(-1)
        out = {"mixture": mixture, "sources": target.unsqueeze(1), "queries": self._queries(take).unsqueeze(1)}
        if self.negative_alpha is not None:
            out.update(self._negatives(take))
        return out

    def _negatives(self, take: dict) -> dict:
        """A negative query per mixture: another sound that is in it (for an absent query, one that is).

        ``negatives [B, 1, D]`` (Query-Mixup of that clip, its own draw), ``has_negative [B]`` (False for a
        lone present source: nothing else to subtract) and ``negative_alpha [B]``.
        """
        absent = take["absent"]
        has = absent | (take["used"].sum(1) >= 2)
        column = (has & ~absent).astype(np.int64)  # the second source; the first when the query is absent (or alone)
        item = take["clips"][np.arange(len(absent)), column]
        item_t = torch.from_numpy(item).to(self.device)
        available = self.available[item_t]
        weights = torch.from_numpy(take["negative_mixup"]).float().to(self.device).clamp_min(1e-6) * available
        query = ((weights / weights.sum(-1, keepdim=True)).unsqueeze(-1) * self.parts[item_t]).sum(-2)
        low, high = self.negative_alpha
        alpha = low + (high - low) * take["negative_u"]
        return {
            "negatives": query.unsqueeze(1),
            "has_negative": torch.from_numpy(has).to(self.device),
            "negative_alpha": torch.from_numpy(alpha).float().to(self.device),
        }

    def _equalise(self, sources: torch.Tensor, take: dict) -> torch.Tensor:
        """The random EQ: gains (dB) interpolated over log frequency, then each source's RMS restored."""
        chosen = torch.from_numpy(take["eq"]).to(self.device)
        if not chosen.any():
            return sources
        length = sources.shape[-1]
        hz = torch.fft.rfftfreq(length, 1.0 / SAMPLE_RATE).to(self.device)
        position = torch.log(hz.clamp_min(EQ_LOW_HZ) / EQ_LOW_HZ) / np.log(SAMPLE_RATE / 2 / EQ_LOW_HZ) * (EQ_POINTS - 1)
        below = position.floor().long().clamp(0, EQ_POINTS - 2)
        fraction = (position - below).clamp(0.0, 1.0)
        gains = torch.from_numpy(take["eq_gain_db"]).float().to(self.device)  # [B, S, P]
        curve_db = gains[..., below] * (1 - fraction) + gains[..., below + 1] * fraction  # [B, S, bins]
        shaped = torch.fft.irfft(torch.fft.rfft(sources) * 10.0 ** (curve_db / 20.0), length)
        shaped = shaped * (_rms(sources) / _rms(shaped).clamp_min(SILENT_RMS)).unsqueeze(-1)
        return torch.where(chosen.unsqueeze(-1), shaped, sources)

    def _reverberate(self, sources: torch.Tensor, take: dict) -> torch.Tensor:
        reverb = torch.from_numpy(take["reverb"]).to(self.device)
        if not reverb.any():
            return sources
        taps = int(RIR_SECONDS * SAMPLE_RATE)
        batch, count, length = sources.shape
        noise = self._noise_source(take["step"], 11, (count, taps), take["rows"])
        time = torch.arange(taps, device=self.device) / SAMPLE_RATE
        rt60 = torch.from_numpy(take["rt60"]).float().to(self.device)
        decay = torch.exp(-6.9078 * time / rt60.unsqueeze(-1))  # -60 dB at rt60
        rir = noise * decay * 0.3
        rir[..., 0] = 1.0  # the direct path
        size = fast_fft_size(length + taps)
        wet = torch.fft.irfft(torch.fft.rfft(sources, size) * torch.fft.rfft(rir, size), size)[..., :length]
        # Keep each source's energy, so the level plan still holds.
        wet = wet * (_rms(sources) / _rms(wet).clamp_min(SILENT_RMS)).unsqueeze(-1)
        return torch.where(reverb.unsqueeze(-1), wet, sources)

    def _noise(self, signal: torch.Tensor, take: dict) -> torch.Tensor:
        wanted = torch.from_numpy(take["noise"]).to(self.device)
        if not wanted.any():
            return torch.zeros_like(signal)
        batch, length = signal.shape
        white = self._noise_source(take["step"], 13, (length,), take["rows"])
        spectrum = torch.fft.rfft(white)
        freqs = torch.fft.rfftfreq(length, device=self.device).clamp_min(1.0 / length)
        tilt = torch.from_numpy(take["noise_tilt"]).float().to(self.device)
        coloured = torch.fft.irfft(spectrum * freqs.unsqueeze(0) ** (-tilt.unsqueeze(-1) / 2), length)
        snr = torch.from_numpy(_db(take["noise_snr_db"])).float().to(self.device)
        coloured = coloured / _rms(coloured).clamp_min(1e-9).unsqueeze(-1) * (_rms(signal) / snr).unsqueeze(-1)
        return coloured * wanted.unsqueeze(-1)

    def _queries(self, take: dict) -> torch.Tensor:
        """Query-Mixup (paper eq. 1) over the query item's available modalities."""
        item = torch.from_numpy(take["query_item"]).to(self.device)
        available = self.available[item]
        weights = torch.from_numpy(take["mixup"]).float().to(self.device).clamp_min(1e-6) * available
        weights = weights / weights.sum(-1, keepdim=True)
        parts = self.parts[item]
        labels = self.label_of_item[take["query_item"]]
        for variants, row, use, pick in ((self.text_variants, TEXT_ROW, take["text_variant"], take["variant_pick"]),
                                         (self.image_variants, IMAGE_ROW, take["image_variant"], take["image_pick"])):
            if variants.prob > 0:  # only then is the row's availability read: a mixer may carry one modality
                parts = variants.swap(parts, row, labels, use & self.available[item, row].cpu().numpy(), pick)
        return (weights.unsqueeze(-1) * parts).sum(-2)
