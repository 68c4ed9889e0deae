"""Mix-and-separate examples: N clips of distinct labels summed into one mixture.

Every random choice of a training example comes from
``np.random.default_rng([seed, step, position])``, never from an iterator's
state, so a resumed (or sharded) run draws exactly the batches an
uninterrupted single-process run would. Evaluation examples are fixed: the
interferers either come from a mixture list file or are drawn from a generator
seeded by the item index alone, so every run and every seed sees the same
validation set.

Sources follow the paper: 65,535 samples at 16 kHz, short clips tiled, long
clips cropped (random crop in training, centre crop in evaluation), training
gain U(0.5, 1.5) clipped to [-1, 1], each source divided by N, mixture = sum.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from omnisep.audio import load_audio
from omnisep.data.manifest import ManifestItem
from omnisep.data.mixtures import read_mixture_list  # noqa: F401  (training.loop reads validation lists through here)
from omnisep.errors import OmniSepError, describe
from omnisep.modalities import MODALITIES, check as check_modalities
from omnisep.queries import mixup_weights
from omnisep.spectral import SAMPLE_RATE, SEGMENT

# How a training query is composed from an item's modalities (see compose_queries); one name alone = that modality only.
MODALITY_MODES = ("mixup", "switch", *MODALITIES, "all_no_mixup")
TRAIN_GAIN_RANGE = (0.5, 1.5)


def load_clip(path: Path) -> np.ndarray:
    """A whole clip as float32 mono at 16 kHz."""
    audio, _ = load_audio(path, sample_rate=SAMPLE_RATE, mono=True)
    return np.ascontiguousarray(audio[0], dtype=np.float32)


def fit_to_length(clip: np.ndarray, length: int, rng: np.random.Generator | None) -> np.ndarray:
    """Tile a short clip, then crop: at random with ``rng``, else at the centre."""
    if clip.shape[0] < length:
        clip = np.tile(clip, math.ceil(length / clip.shape[0]))
    spare = clip.shape[0] - length
    start = int(rng.integers(0, spare + 1)) if rng is not None else spare // 2
    return clip[start : start + length]


def protocol_mixture(test_set, row) -> tuple[np.ndarray, np.ndarray]:
    """Sources ``[S, T]`` and their mixture ``[T]`` (float32) as the evaluation protocol builds them: the
    centre SEGMENT samples of each clip of ``row`` (item indices), divided by the number of sources."""
    sources = np.stack([fit_to_length(load_clip(test_set.items[i].audio), SEGMENT, None) for i in row]) / len(row)
    return sources, sources.sum(0).astype(np.float32)


class QueryTable:
    """Per-item query embeddings ``[M, D]`` and availability ``[M]``, rows in ``MODALITIES`` order.

    From an embedding cache (the normal route: the frozen encoder ran once in
    ``omnisep embed``), or computed here with an encoder, which is fine for
    small corpora and tests. Missing modalities are zero rows marked unavailable.
    """

    def __init__(self, items: Sequence[ManifestItem], *, cache=None, encoder=None):
        if (cache is None) == (encoder is None):
            raise ValueError("QueryTable needs exactly one of cache or encoder")
        self._cache = cache
        self._rows: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        if encoder is not None:
            self.dim = encoder.dim
            self._embed_all(items, encoder)
        else:
            self.dim = cache.dim
            missing = [item.id for item in items if item.id not in cache]
            if missing:
                raise OmniSepError(
                    f"{len(missing)} item(s) are not in the embedding cache {describe(cache.path)} "
                    f"(first: '{missing[0]}'); run `omnisep embed` on the manifest again."
                )

    def _embed_all(self, items: Sequence[ManifestItem], encoder) -> None:
        from omnisep.data.cache import item_inputs

        labels = sorted({item.label for item in items})
        text = dict(zip(labels, encoder.embed("text", labels)))  # one embedding per label, shared by its items
        for item in items:
            frames = item_inputs(item, "image")  # the image, or frames around a video's centre, averaged
            image = F.normalize(encoder.embed("image", frames).mean(0), dim=0) if frames else None
            audio = encoder.embed("audio", [load_clip(item.audio)], SAMPLE_RATE)[0]
            self._rows[item.id] = self._stack({"text": text[item.label], "image": image, "audio": audio})

    def _stack(self, vectors: dict) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.zeros(len(MODALITIES), self.dim)
        available = torch.zeros(len(MODALITIES), dtype=torch.bool)
        for m, name in enumerate(MODALITIES):
            vector = vectors.get(name)
            if vector is not None:
                rows[m] = torch.as_tensor(vector, dtype=torch.float32).reshape(-1)
                available[m] = True
        return rows, available

    def available(self, item_id: str) -> torch.Tensor:
        """``[M]`` bool: which modalities the item has (cheap for a cache)."""
        if item_id in self._rows or self._cache is None:
            return self.get(item_id)[1]
        present = self._cache.present(item_id)
        return torch.tensor([present[m] for m in MODALITIES])

    def get(self, item_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        if item_id not in self._rows:
            if self._cache is None:
                raise KeyError(item_id)
            rows, available = self._stack(self._cache.get(item_id))
            if not available.any():
                raise OmniSepError(f"The embedding cache has no embedding for item '{item_id}'.")
            return rows, available
        return self._rows[item_id]


def compose_queries(
    embeddings: torch.Tensor,
    available: torch.Tensor,
    mode: str,
    generator: torch.Generator,
    switch_modality: int | None = None,
) -> torch.Tensor:
    """One training query per source: ``[N, M, D], [N, M] -> [N, D]``.

    mixup: Query-Mixup (eq. 1), U(0, 1) weights over the available modalities
    divided by their sum; every part normalised, the sum not re-normalised.
    all_no_mixup: equal weights instead. switch: CLIPSep-style, the step's
    modality (``switch_modality``), or a random available one for a source
    that lacks it. text/image/audio: that modality alone.
    """
    parts = F.normalize(embeddings, dim=-1) * available.unsqueeze(-1)
    if mode == "mixup":
        weights = mixup_weights(available, generator)
    elif mode == "all_no_mixup":
        weights = available.float() / available.sum(-1, keepdim=True).clamp(min=1)
    elif mode in ("switch", *MODALITIES):
        weights = torch.zeros(available.shape)
        for n in range(available.shape[0]):
            choice = switch_modality if mode == "switch" else MODALITIES.index(mode)
            if choice is None or not available[n, choice]:
                options = torch.nonzero(available[n]).flatten()
                choice = int(options[torch.randint(len(options), (1,), generator=generator)])
            weights[n, choice] = 1.0
    else:
        raise ValueError(f"unknown modality mode {mode!r}")
    return (weights.unsqueeze(-1) * parts).sum(-2)


class MixtureDataset(torch.utils.data.Dataset):
    """Mixtures of ``num_sources`` clips of distinct labels.

    Training: ``dataset[(step, position)]`` (the key a batch sampler yields).
    Evaluation: ``dataset[i]`` for ``i < len(dataset)``, one mixture per
    target item (or per row of a mixture list).

    Each example is a dict of tensors: ``mixture [T]``, ``sources [N, T]``
    (already divided by N; they sum to the mixture), ``embeddings [N, M, D]``,
    ``available [N, M]`` and ``queries [N, D]`` (the composed training query;
    Query-Mixup in evaluation).
    """

    def __init__(
        self,
        items: Sequence[ManifestItem],
        queries: QueryTable,
        *,
        training: bool,
        num_sources: int = 2,
        segment_samples: int = SEGMENT,
        seed: int = 1234,
        modality_mode: str = "mixup",
        modalities: Sequence[str] = MODALITIES,
        mixtures: list[list[int]] | None = None,
        clip_cache_items: int = 256,
    ):
        if modality_mode not in MODALITY_MODES:
            raise OmniSepError(f"Unknown modality_mode '{modality_mode}' (choose from {', '.join(MODALITY_MODES)}).")
        check_modalities(modalities)
        self.items = list(items)
        self.queries = queries
        self.training = training
        self.num_sources = num_sources
        self.segment_samples = segment_samples
        self.seed = seed
        self.modality_mode = modality_mode
        if modality_mode in MODALITIES:  # a single-modality ablation uses nothing else
            modalities = (modality_mode,)
        self.modality_mask = torch.tensor([m in modalities for m in MODALITIES])
        self.dropped: list[str] = []
        if training:
            # An image-only ablation cannot train on a clip that has no picture:
            # such items leave the pool (and are counted) instead of failing a step.
            keep = [bool((queries.available(item.id) & self.modality_mask).any()) for item in self.items]
            self.dropped = [item.id for item, kept in zip(self.items, keep) if not kept]
            self.items = [item for item, kept in zip(self.items, keep) if kept]
            if not self.items:
                raise OmniSepError(f"No training item has an embedding for the query modalities {', '.join(modalities)}.")
        labels = sorted({item.label for item in self.items})
        if len(labels) < num_sources:
            raise OmniSepError(
                f"Mixing {num_sources} sources of distinct labels needs at least {num_sources} labels; "
                f"the manifest has {len(labels)}."
            )
        self._label_ids = np.array([labels.index(item.label) for item in self.items])
        self._mixtures = mixtures
        self._clips: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._clip_cache_items = clip_cache_items

    def __len__(self) -> int:
        return len(self._mixtures) if self._mixtures is not None else len(self.items)

    def _clip(self, path: Path) -> np.ndarray:
        clip = self._clips.get(path)
        if clip is None:
            clip = load_clip(path)
            self._clips[path] = clip
            if len(self._clips) > self._clip_cache_items:
                self._clips.popitem(last=False)
        else:
            self._clips.move_to_end(path)
        return clip

    def _pick_sources(self, first: int | None, rng: np.random.Generator) -> list[int]:
        chosen = [] if first is None else [first]
        while len(chosen) < self.num_sources:
            candidates = np.flatnonzero(~np.isin(self._label_ids, self._label_ids[chosen]))
            chosen.append(int(candidates[rng.integers(len(candidates))]))
        return chosen

    def __getitem__(self, key):
        if self.training:
            step, position = key
            rng = np.random.default_rng([self.seed, int(step), int(position)])
            indices = self._pick_sources(None, rng)
            return self._example(indices, rng, self._switch_modality(int(step)))
        index = int(key)
        rng = np.random.default_rng(index)
        indices = self._mixtures[index] if self._mixtures is not None else self._pick_sources(index, rng)
        return self._example(indices, rng, None)

    def _switch_modality(self, step: int) -> int | None:
        if self.modality_mode != "switch":
            return None
        options = torch.nonzero(self.modality_mask).flatten()
        return int(options[np.random.default_rng([self.seed, step]).integers(len(options))])

    def _example(self, indices: list[int], rng: np.random.Generator, switch_modality: int | None) -> dict:
        sources = np.empty((self.num_sources, self.segment_samples), dtype=np.float32)
        for n, i in enumerate(indices):
            source = fit_to_length(self._clip(self.items[i].audio), self.segment_samples, rng if self.training else None)
            if self.training:
                source = np.clip(source * rng.uniform(*TRAIN_GAIN_RANGE), -1.0, 1.0)
            sources[n] = source / self.num_sources
        embeddings, available = zip(*(self.queries.get(self.items[i].id) for i in indices))
        embeddings = torch.stack(embeddings)
        available = torch.stack(available) & self.modality_mask
        for n, i in enumerate(indices):
            if not available[n].any():
                raise OmniSepError(f"Item '{self.items[i].id}' has no embedding for the configured query modalities.")
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        mode = self.modality_mode if self.training else "mixup"
        queries = compose_queries(embeddings, available, mode, generator, switch_modality)
        sources_tensor = torch.from_numpy(sources)
        return {
            "mixture": sources_tensor.sum(0),
            "sources": sources_tensor,
            "embeddings": embeddings,
            "available": available,
            "queries": queries,
        }
