"""Training the sound tagger (:mod:`omnisep.tagger`) on mixtures drawn as the Separate-Net's are.

The training mixtures come from the resident pipeline's mixer (1 to 3 sounds
of distinct classes, -10 to +10 dB, rooms, noise, a random EQ per source), so
the tagger hears what the scan will hear; each mixture's labels are the
classes of the clips in it. The backbone is frozen, so its block features are
computed once (the slow part: one aisfx pass per mixture) and kept in a
features file that a second run reuses; fitting the small MLP on them takes
seconds to minutes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from omnisep import fileio
from omnisep.data.manifest import ManifestItem
from omnisep.errors import OmniSepError
from omnisep.spectral import SAMPLE_RATE
from omnisep.tagger import Tagger, block_features
from omnisep.training.resident import MixingSection, ResidentMixer


def tagger_mixing() -> MixingSection:
    """The mixtures a tagger learns from: more crowded than the Separate-Net's, never an absent query."""
    return MixingSection(source_weights=[0.15, 0.45, 0.4], absent_prob=0.0, target_to_rest_db=[-10.0, 10.0],
                         reverb_prob=0.25, noise_prob=0.3, noise_snr_db=[5.0, 30.0], level_db=[-35.0, -12.0],
                         eq_prob=0.5, eq_db=8.0)


def features_of_waves(backbone, waves: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE,
                      pooling: str = "embedding") -> torch.Tensor:
    """``[M, blocks, features]`` for equal-length mono waves (``omnisep.tagger.POOLINGS``)."""
    return torch.stack([block_features(backbone, wave, sample_rate, pooling) for wave in waves])


def mixture_features(
    items: Sequence[ManifestItem],
    clips: Sequence[np.ndarray],
    count: int,
    seed: int,
    backbone,
    mixing: MixingSection | None = None,
    seconds: float = 4.0,
    batch: int = 32,
    progress=None,
    first_step: int = 0,
    pooling: str = "embedding",
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``count`` random training mixtures -> (block features ``[count, blocks, F]``, targets ``[count, N]``, labels).

    The mixtures are the mixer's batches ``first_step, first_step + 1, ...`` of ``batch`` each, so a long
    draw can be made in pieces (``first_step``) that are, together, the draw made at once."""
    if count < 1:
        raise OmniSepError(f"the tagger needs at least one training mixture, not {count}.")
    labels = sorted({item.label for item in items})
    embeddings = torch.zeros(len(items), 1, 1)
    available = torch.ones(len(items), 1, dtype=torch.bool)
    mixer = ResidentMixer(items, clips, embeddings, available, mixing or tagger_mixing(), round(seconds * SAMPLE_RATE),
                          seed, torch.device("cpu"), batch)
    features, targets = [], []
    for n in range(math.ceil(count / batch)):
        step = first_step + n
        rows = range(min(batch, count - n * batch))
        mixtures = mixer.batch(step, rows)["mixture"].numpy()
        plan = mixer._plan(step)
        target = np.zeros((len(rows), len(labels)), np.float32)
        for b in rows:
            for clip, used in zip(plan["clips"][b], plan["used"][b]):
                if used:
                    target[b, mixer.label_of_item[clip]] = 1.0
        features.append(features_of_waves(backbone, mixtures, pooling=pooling))
        targets.append(torch.from_numpy(target))
        if progress is not None:
            progress(len(rows))
    return torch.cat(features), torch.cat(targets), labels


def list_features(test_set, backbone, labels: Sequence[str], pooling: str = "embedding") -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed mixture list, mixed as the evaluation mixes it (``data.mixing.protocol_mixture``)."""
    from omnisep.data.mixing import protocol_mixture

    waves, targets = [], np.zeros((len(test_set.mixtures), len(labels)), np.float32)
    for row, indices in enumerate(test_set.mixtures):
        waves.append(protocol_mixture(test_set, indices)[1])
        for i in indices:
            targets[row, list(labels).index(test_set.items[i].label)] = 1.0
    return features_of_waves(backbone, waves, pooling=pooling), torch.from_numpy(targets)


def save_features(path, features: torch.Tensor, targets: torch.Tensor) -> Path:
    with fileio.atomic_path(path) as temp:
        save_file({"features": features.contiguous(), "targets": targets.contiguous()}, str(temp))
    return Path(path)


def load_features(path) -> tuple[torch.Tensor, torch.Tensor]:
    state = load_file(str(path))
    return state["features"], state["targets"]


def presence_scores(tagger: Tagger, features: torch.Tensor) -> torch.Tensor:
    """``[M, N]`` window probabilities (the largest block's)."""
    tagger.eval()
    with torch.inference_mode():
        return torch.sigmoid(tagger.window_logits(features))


def ranking_metrics(scores: torch.Tensor, targets: torch.Tensor, first: torch.Tensor | None = None) -> dict:
    """How well ``scores [M, N]`` rank the labels ``targets`` marks present.

    ``top1``: the best-scored label is present; ``all_in_top``: every present label ranks above every absent
    one; ``auc``: a present label outranks an absent one; with ``first`` (the queried label per mixture):
    ``other``: the best label other than the queried one is present (what the automatic negative needs).
    """
    present = targets > 0.5
    top = scores.argmax(1)
    out = {"mixtures": int(len(scores)), "top1": float(present[torch.arange(len(scores)), top].float().mean())}
    lowest_present = torch.where(present, scores, torch.full_like(scores, math.inf)).amin(1)
    highest_absent = torch.where(present, torch.full_like(scores, -math.inf), scores).amax(1)
    out["all_in_top"] = float((lowest_present > highest_absent).float().mean())
    pairs = (scores.unsqueeze(2) > scores.unsqueeze(1)) & present.unsqueeze(2) & ~present.unsqueeze(1)
    out["auc"] = float(pairs.sum() / (present.sum(1) * (~present).sum(1)).sum())
    if first is not None:
        masked = scores.clone()
        masked[torch.arange(len(scores)), first] = -math.inf
        out["other"] = float(present[torch.arange(len(scores)), masked.argmax(1)].float().mean())
    return out


def fit_tagger(
    features: torch.Tensor,
    targets: torch.Tensor,
    labels: Sequence[str],
    hidden: int = 512,
    dropout: float = 0.5,
    epochs: int = 40,
    batch: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    seed: int = 0,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    log=None,
    pooling: str = "embedding",
) -> tuple[Tagger, list[dict]]:
    """Fit the MLP with per-label BCE on the window logit (largest block's); the features are standardised first."""
    torch.manual_seed(seed)
    tagger = Tagger(list(labels), features.shape[-1], hidden, dropout, pooling)
    flat = features.reshape(-1, features.shape[-1])
    tagger.mean.copy_(flat.mean(0))
    tagger.std.copy_(flat.std(0).clamp_min(1e-4))
    optimiser = torch.optim.AdamW(tagger.net.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(features) / batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=max(1, steps), pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        tagger.train()
        order = torch.randperm(len(features), generator=generator)
        total = 0.0
        for start in range(0, len(features), batch):
            rows = order[start : start + batch]
            loss = F.binary_cross_entropy_with_logits(tagger.window_logits(features[rows]), targets[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(rows)
        entry = {"epoch": epoch + 1, "train_loss": total / len(features)}
        if validation is not None and ((epoch + 1) % 10 == 0 or epoch + 1 == epochs):
            scores = presence_scores(tagger, validation[0])
            entry.update({f"val_{k}": v for k, v in ranking_metrics(scores, validation[1]).items()})
        history.append(entry)
        if log is not None:
            log(entry)
    return tagger.eval(), history


def _pooling_tag(pooling: str) -> str:
    """File-name part of a pooling's feature pieces ("" for the embedding, so earlier work folders stay valid)."""
    return "" if pooling == "embedding" else f"{pooling}-"


CHUNK_MIXTURES = 4000  # features are computed and kept in pieces of this many mixtures (a killed run keeps them)
BATCH = 32


def train_from_manifest(
    manifest: str,
    output: str,
    work: str,
    mixtures: int = 12000,
    seed: int = 0,
    hidden: int = 512,
    dropout: float = 0.5,
    weight_decay: float = 1e-2,
    epochs: int = 40,
    validation_list: str | None = None,
    log=print,
    pooling: str = "embedding",
) -> Path:
    """Draw ``mixtures`` training mixtures from the manifest's train items, fit, save.

    Their features are kept in ``work`` in pieces of :data:`CHUNK_MIXTURES`, named by seed and position,
    so a rerun (or a longer draw with the same seed) reuses what was computed; each pooling
    (``omnisep.tagger.POOLINGS``) keeps its own pieces."""
    from tqdm import tqdm

    from omnisep.data.manifest import read_manifest
    from omnisep.data.mixing import load_clip
    from omnisep.data.mixtures import load_test_set
    from omnisep.encoders.backbones import load_sfx_cnn
    from omnisep.tagger import save_tagger

    if mixtures % CHUNK_MIXTURES:
        raise OmniSepError(f"--mixtures must be a multiple of {CHUNK_MIXTURES}, got {mixtures}.")
    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    items = [item for item in read_manifest(manifest) if item.split == "train"]
    if not items:
        raise OmniSepError(f"The manifest {manifest} has no training items (split = train).")
    labels = sorted({item.label for item in items})
    backbone = load_sfx_cnn()
    pieces, clips = [], None
    for piece in range(mixtures // CHUNK_MIXTURES):
        path = work_dir / f"train-{_pooling_tag(pooling)}seed{seed}-{piece:03d}.safetensors"
        if not path.is_file():
            clips = clips if clips is not None else [load_clip(item.audio) for item in items]
            started = time.perf_counter()
            with tqdm(total=CHUNK_MIXTURES, unit="mixture", desc=f"tagger features {piece + 1}/{mixtures // CHUNK_MIXTURES}",
                      dynamic_ncols=True) as bar:
                features, targets, _ = mixture_features(items, clips, CHUNK_MIXTURES, seed, backbone, batch=BATCH,
                                                        progress=bar.update, first_step=piece * CHUNK_MIXTURES // BATCH,
                                                        pooling=pooling)
            save_features(path, features, targets)
            log(f"features of {CHUNK_MIXTURES} mixtures in {time.perf_counter() - started:.0f} s -> {path}")
        pieces.append(load_features(path))
    features = torch.cat([piece[0] for piece in pieces])
    targets = torch.cat([piece[1] for piece in pieces])
    validation = None
    if validation_list is not None:
        test_set = load_test_set(validation_list, manifest)
        cached_val = work_dir / f"list-{_pooling_tag(pooling)}{Path(validation_list).stem}.safetensors"
        if cached_val.is_file():
            validation = load_features(cached_val)
        else:
            validation = list_features(test_set, backbone, labels, pooling)
            save_features(cached_val, *validation)
    tagger, history = fit_tagger(features, targets, labels, hidden=hidden, dropout=dropout, weight_decay=weight_decay,
                                 epochs=epochs, seed=seed, validation=validation, log=lambda entry: log(str(entry)),
                                 pooling=pooling)
    record = {"trained_on": {"manifest": str(manifest), "mixtures": mixtures, "seed": seed, "epochs": epochs,
                             "weight_decay": weight_decay},
              "history": history[-1]}
    return save_tagger(output, tagger, record)
