"""Training the sound tagger: the mixtures' labels are those of the clips in them; fitting learns them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnisep.data.manifest import ManifestItem
from omnisep.training.tagger import fit_tagger, mixture_features, ranking_metrics, tagger_mixing


class SpectrumBackbone(torch.nn.Module):
    """A stand-in for the aisfx CNN: each block's mean log-mel band energies, 96 numbers padded to 512."""

    def forward(self, blocks):
        return torch.nn.functional.pad(blocks.mean(dim=1), (0, 512 - blocks.shape[-1]))


def tone_clips(labels, per_label=3, seconds=1.5):
    """Each label a pure tone at its own frequency (well apart on the mel scale), varied in phase and level."""
    rng = np.random.default_rng(0)
    items, clips = [], []
    time = np.arange(int(seconds * 16000)) / 16000
    for n, label in enumerate(labels):
        for k in range(per_label):
            items.append(ManifestItem(id=f"{label}{k}", audio=f"{label}{k}.wav", label=label, split="train"))
            tone = np.sin(2 * np.pi * (200 * 2**n) * time + rng.uniform(0, 6)) * rng.uniform(0.2, 1.0)
            clips.append(tone.astype(np.float32))
    return items, clips


def test_each_training_mixture_is_labelled_with_the_classes_of_its_clips():
    from omnisep.encoders.backbones import sfx_mel_filters

    labels = ["a", "b", "c", "d", "e"]
    items, clips = tone_clips(labels)
    mixing = tagger_mixing()
    mixing.noise_prob = 0.0  # so a band is quiet exactly when its tone is absent
    features, targets, names = mixture_features(items, clips, 40, 3, SpectrumBackbone(), mixing=mixing, seconds=1.0, batch=16)
    assert names == labels
    assert features.shape[0] == 40 and features.shape[-1] == 512 and targets.shape == (40, 5)
    counts = targets.sum(1)
    assert counts.min() >= 1 and counts.max() <= 3 and len(set(counts.tolist())) > 1  # 1 to 3 sounds
    # Each label's tone, heard in its own mel band: loud there exactly when the mixture is labelled with it.
    fft_hz = np.linspace(0, 22050, 1025)
    bands = [int(sfx_mel_filters()[:, np.argmin(np.abs(fft_hz - 200 * 2**n))].argmax()) for n in range(5)]
    heard = features[:, :, bands].amax(dim=1)
    present = targets > 0.5
    assert heard[present].min() > 2 * heard[~present].max()


def test_fitting_learns_which_tones_are_in_a_mixture():
    labels = ["a", "b", "c", "d", "e"]
    items, clips = tone_clips(labels)
    backbone = SpectrumBackbone()
    features, targets, _ = mixture_features(items, clips, 600, 1, backbone, seconds=1.0, batch=64)
    held_features, held_targets, _ = mixture_features(items, clips, 100, 2, backbone, seconds=1.0, batch=50)
    tagger, history = fit_tagger(features, targets, labels, hidden=32, epochs=30, batch=64, lr=3e-3,
                                 validation=(held_features, held_targets))
    scores = torch.sigmoid(tagger.window_logits(held_features)).detach()
    metrics = ranking_metrics(scores, held_targets)
    assert metrics["auc"] > 0.95 and metrics["top1"] > 0.9
    assert history[-1]["val_auc"] == metrics["auc"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_ranking_metrics_by_hand():
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.9, 0.5], [0.3, 0.1, 0.7]])
    targets = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    metrics = ranking_metrics(scores, targets, first=torch.tensor([0, 0, 1]))
    assert metrics["top1"] == pytest.approx(1 / 3)  # row 0 only
    assert metrics["all_in_top"] == pytest.approx(1 / 3)
    # pairs (present > absent): row 0: 2 of 2; row 1: 0.2 > 0.9? no, 0.5 > 0.9? no: 0 of 2; row 2: 0.1 > 0.3, 0.7: 0 of 2.
    assert abs(metrics["auc"] - 2 / 6) < 1e-6
    # best other than the queried: row 0 -> label 1 (present), row 1 -> label 1 (absent), row 2 -> label 2 (absent).
    assert metrics["other"] == pytest.approx(1 / 3)


def test_a_draw_made_in_pieces_is_the_draw_made_at_once():
    labels = ["a", "b", "c", "d"]
    items, clips = tone_clips(labels, per_label=2, seconds=0.6)
    whole = mixture_features(items, clips, 48, 5, SpectrumBackbone(), seconds=0.5, batch=8)
    first = mixture_features(items, clips, 24, 5, SpectrumBackbone(), seconds=0.5, batch=8)
    second = mixture_features(items, clips, 24, 5, SpectrumBackbone(), seconds=0.5, batch=8, first_step=3)
    torch.testing.assert_close(torch.cat([first[0], second[0]]), whole[0], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([first[1], second[1]]), whole[1], rtol=0, atol=0)


class MapBackbone(SpectrumBackbone):
    """A stand-in whose last map is the block's log-mel spectrogram itself, repeated over 512 channels at 1/8 resolution."""

    def feature_map(self, blocks):
        pooled = torch.nn.functional.avg_pool2d(blocks.unsqueeze(1), 8)  # [B, 1, time/8, mels/8]
        return pooled.expand(-1, 512, -1, -1)

    def forward(self, blocks):
        return self.feature_map(blocks).mean(dim=3).amax(dim=2)


def test_a_band_tagger_learns_from_band_features_and_says_so():
    from omnisep.tagger import POOLINGS

    labels = ["a", "b", "c", "d"]
    items, clips = tone_clips(labels, per_label=2, seconds=0.6)
    backbone = MapBackbone()
    bands, targets, _ = mixture_features(items, clips, 16, 4, backbone, seconds=0.5, batch=8, pooling="bands")
    plain, same_targets, _ = mixture_features(items, clips, 16, 4, backbone, seconds=0.5, batch=8)
    assert bands.shape[-1] == POOLINGS["bands"] and plain.shape[-1] == POOLINGS["embedding"]
    torch.testing.assert_close(bands[..., :512], plain, rtol=1e-6, atol=1e-6)  # the same draw, the embedding first
    assert torch.equal(targets, same_targets)
    tagger, _ = fit_tagger(bands, targets, labels, hidden=8, epochs=1, batch=8, pooling="bands")
    assert tagger.pooling == "bands" and tagger.config()["pooling"] == "bands"
