"""`omnisep.scan` against a model whose masks are known by construction.

The gated model's U-Net outputs a constant map, so each bank query gets one
mask value everywhere: ~1 ("pass"), ~0 ("block") and exactly 0.5 ("half",
whose separated energy is therefore 0.5**2 = 0.25 of the mixture's).
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from omnisep.errors import OmniSepError
from omnisep.models import SeparateNet, SeparateNetConfig
from omnisep.queries import QueryBank
from omnisep.plotting.scan import plot_scan
from omnisep.scan import UNHEARD_WEIGHT, scan, scan_estimates

EMB_DIM = 8
SR = 16000


def gated_model(emb_dim: int = EMB_DIM) -> SeparateNet:
    """Masks: sigmoid(40 * sigmoid(50 q_0 - 25) - 20), whatever the audio."""
    torch.manual_seed(0)
    model = SeparateNet(SeparateNetConfig(ngf=4, depth=3, k=2, emb_dim=emb_dim))
    with torch.no_grad():
        last = model.unet.body.up[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.0, 0.0]))
        model.query_proj.weight.zero_()
        model.query_proj.weight[0, 0] = 50.0
        model.query_proj.bias.copy_(torch.tensor([-25.0, 0.0]))
        model.scale.copy_(torch.tensor([40.0, 0.0]))
        model.bias.fill_(-20.0)
    return model.eval()


def gated_bank(emb_dim: int = EMB_DIM) -> QueryBank:
    rows = torch.zeros(3, emb_dim)
    rows[0, 0] = 1.0  # q_0 = 1: mask sigmoid(20)
    rows[1, 1] = 1.0  # q_0 = 0: mask sigmoid(-20)
    rows[2, 0], rows[2, 2] = 0.5, math.sqrt(0.75)  # q_0 = 0.5: logit exactly 0, mask 0.5
    return QueryBank(["pass", "block", "half"], rows)


@pytest.fixture(scope="module")
def gated():
    return SimpleNamespace(model=gated_model(), bank=gated_bank())


def noise_with_gap(seconds: float = 3.0, gap=(1.0, 2.0), rate: int = SR) -> np.ndarray:
    rng = np.random.default_rng(1)
    wave = (0.2 * rng.standard_normal(int(seconds * rate))).astype(np.float32)
    wave[int(gap[0] * rate) : int(gap[1] * rate)] = 0.0
    return wave


def test_energy_ratios_match_the_constructed_masks(gated):
    result = scan(gated, noise_with_gap(), SR, frame_seconds=0.5)
    assert result.labels == ["pass", "block", "half"]
    assert result.energy_ratio.shape == (3, 6)
    np.testing.assert_allclose(result.times, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    # Frames 2 and 3 are digital silence: no evidence, ratio left at 0.
    assert result.audible.tolist() == [True, True, False, False, True, True]
    audible = result.energy_ratio[:, result.audible]
    np.testing.assert_allclose(audible[0], 1.0, atol=2e-3)
    np.testing.assert_allclose(audible[1], 0.0, atol=1e-6)
    np.testing.assert_allclose(audible[2], 0.25, atol=2e-3)
    assert (result.energy_ratio[:, ~result.audible] == 0).all()
    np.testing.assert_allclose(result.presence, [1.0, 0.0, 0.25], atol=2e-3)
    assert result.ranking() == [0, 2, 1]
    # Present while there is sound, absent during the gap.
    assert result.segments(0, threshold=0.5) == [(0.0, 1.0), (2.0, 3.0)]
    assert result.segments(2, threshold=0.5) == []


def test_stereo_and_other_rates_are_downmixed_and_resampled(gated):
    mono = noise_with_gap(seconds=2.0, gap=(0.5, 1.5), rate=22050)
    stereo = np.stack([mono, mono])
    result = scan(gated, stereo, 22050, frame_seconds=0.25)
    assert result.energy_ratio.shape == (3, 8)
    assert result.duration == pytest.approx(2.0, abs=1e-3)
    # The resampler rings a little into the frames at the gap's edges; the inner ones stay silent.
    assert result.audible[[0, 1, 6, 7]].all() and not result.audible[[3, 4]].any()
    np.testing.assert_allclose(result.presence, [1.0, 0.0, 0.25], atol=5e-3)


def test_ratios_equal_a_hand_computation_from_separate_tensor(monkeypatch):
    """An untrained model (masks vary over time and frequency), streamed in small blocks."""
    from omnisep.apply import separate_tensor

    torch.manual_seed(3)
    model = SeparateNet(SeparateNetConfig(ngf=4, depth=3, k=4, emb_dim=EMB_DIM)).eval()
    bank = QueryBank(["a", "b"], torch.randn(2, EMB_DIM))
    rng = np.random.default_rng(2)
    wave = (0.3 * rng.standard_normal(int(2.6 * SR)) * np.linspace(0.1, 1, int(2.6 * SR))).astype(np.float32)

    monkeypatch.setattr("omnisep.scan.STREAM_BLOCK_SECONDS", 0.3)  # pushes that straddle frames
    result = scan(SimpleNamespace(model=model, bank=bank), wave, SR, frame_seconds=0.4)

    targets = separate_tensor(model, torch.from_numpy(wave), bank.embeddings).numpy().astype(np.float64)
    edges = list(range(0, wave.size, 6400)) + [wave.size]  # 0.4 s frames, the last one short
    expected = np.array(
        [[np.sum(t[a:b] ** 2) / np.sum(wave[a:b].astype(np.float64) ** 2) for a, b in zip(edges, edges[1:])] for t in targets]
    )
    assert result.energy_ratio.shape == (2, 7)
    assert 0.02 < expected.min() and expected.max() < 0.98  # a real spread, not saturated masks
    np.testing.assert_allclose(result.energy_ratio, expected, rtol=1e-4)
    np.testing.assert_allclose(result.presence, np.quantile(expected, 0.9, axis=1), rtol=1e-4)


def test_scan_from_estimates_is_the_scan_number_for_number():
    """Evaluation separates every label once and derives the scan from those estimates: the same result."""
    from omnisep.apply import separate_tensor
    from omnisep.queries import normalize

    torch.manual_seed(4)
    model = SeparateNet(SeparateNetConfig(ngf=4, depth=3, k=4, emb_dim=EMB_DIM)).eval()
    bank = QueryBank(["a", "b", "c"], torch.randn(3, EMB_DIM))
    wave = (0.3 * np.random.default_rng(5).standard_normal(int(2.3 * SR))).astype(np.float32)
    expected = scan(SimpleNamespace(model=model, bank=bank), wave, SR)
    estimates = separate_tensor(model, torch.from_numpy(wave), normalize(bank.embeddings)).numpy()
    result = scan_estimates(bank.labels, estimates, wave)
    for field in ("times", "energy_ratio", "audible", "presence"):
        np.testing.assert_array_equal(getattr(result, field), getattr(expected, field))
    assert (result.labels, result.duration, result.frame_seconds) == (expected.labels, expected.duration, expected.frame_seconds)


def test_silence_scores_nothing(gated):
    result = scan(gated, np.zeros(SR, dtype=np.float32), SR)
    assert not result.audible.any()
    assert (result.presence == 0).all()
    assert all(result.segments(i) == [] for i in range(3))


def test_json_summary_schema(gated):
    result = scan(gated, noise_with_gap(), SR, frame_seconds=0.5)
    summary = json.loads(json.dumps(result.to_dict(threshold=0.5)))
    assert summary["format"] == "omnisep-scan"
    assert summary["frame_seconds"] == 0.5
    assert summary["threshold"] == 0.5
    assert summary["duration_seconds"] == 3.0
    assert summary["times"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [entry["label"] for entry in summary["labels"]] == ["pass", "half", "block"]
    first = summary["labels"][0]
    assert set(first) == {"label", "presence", "present", "segments", "energy_ratio", "evidence"}
    assert summary["verified"] is False and first["evidence"] == first["energy_ratio"]
    assert first["present"] is True and summary["labels"][1]["present"] is False
    assert first["segments"] == [[0.0, 1.0], [2.0, 3.0]]
    assert len(first["energy_ratio"]) == 6


def test_plot_is_written_atomically_and_checks_its_path(gated, tmp_path):
    result = scan(gated, noise_with_gap(), SR)
    path = tmp_path / "scan.png"
    plot_scan(result, path, threshold=0.5)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 400
    assert [p.name for p in tmp_path.iterdir()] == ["scan.png"]
    with pytest.raises(OmniSepError, match="must be a .png"):
        plot_scan(result, tmp_path / "scan.jpg")
    with pytest.raises(OmniSepError, match="folder does not exist"):
        plot_scan(result, tmp_path / "missing" / "scan.png")


def test_a_model_without_bank_is_a_user_error():
    with pytest.raises(OmniSepError, match="no query bank"):
        scan(SimpleNamespace(model=gated_model(), bank=None), np.zeros(SR, np.float32), SR)



class ListeningEncoder:
    """Hears every clip as one fixed embedding; records the clips it was given."""

    def __init__(self, vector):
        self.vector = torch.nn.functional.normalize(torch.as_tensor(vector, dtype=torch.float32), dim=0)
        self.calls: list[list[int]] = []

    def embed(self, modality, clips, sample_rate=None):
        assert modality == "audio" and sample_rate == SR
        self.calls.append([len(clip) for clip in clips])
        return self.vector.expand(len(clips), -1).clone()


def verification(encoder, top=3, window_seconds=1.0, power=1.0):
    from omnisep.queries import normalize
    from omnisep.scan import Verification

    return Verification(encoder, normalize(gated_bank().embeddings), top=top, window_seconds=window_seconds, power=power)


def test_verification_weighs_each_label_by_how_its_separation_sounds(gated):
    """Heard as the "half" label's row: "half" keeps its ratio, "pass" keeps cos(pass, half) = 0.5 of it."""
    heard = gated_bank().embeddings[2]
    encoder = ListeningEncoder(heard)
    wave = noise_with_gap(seconds=3.2, gap=(1.0, 2.0))
    result = scan(gated, wave, SR, frame_seconds=0.5, verify=verification(encoder, power=2.0))
    # Windows of 1 s start at 0, 1 and 2 s; the last takes the 0.2 s remainder (under a quarter window).
    np.testing.assert_allclose(result.window_starts, [0.0, 1.0, 2.0])
    assert encoder.calls == [[SR] * 3, [round(1.2 * SR)] * 3]  # the silent window is not listened to
    expected_weight = np.array([0.5**2, 0.0, 1.0])  # cos^2 with pass, block, half rows
    np.testing.assert_allclose(result.similarity[:, [0, 2]], np.repeat(expected_weight[:, None], 2, 1), atol=1e-6)
    assert (result.similarity[:, 1] == 0).all()
    audible = result.audible
    np.testing.assert_allclose(result.evidence[:, audible], result.energy_ratio[:, audible] * expected_weight[:, None], atol=1e-6)
    np.testing.assert_allclose(result.presence, [0.25, 0.0, 0.25], atol=3e-3)
    assert result.to_dict(0.2)["verified"] is True


def test_only_the_top_labels_are_listened_to(gated):
    encoder = ListeningEncoder(gated_bank().embeddings[0])
    result = scan(gated, noise_with_gap(seconds=2.0, gap=(0.5, 0.6)), SR, verify=verification(encoder, top=1))
    assert encoder.calls == [[SR], [SR]]  # two 1 s windows, one clip each: the label with the most energy
    # "half" has energy but is not in the top 1, so it is not believed; "pass" sounds like itself.
    np.testing.assert_allclose(result.presence, [1.0, 0.0, 0.0], atol=3e-3)
    # Not listened to, "half" keeps a token UNHEARD_WEIGHT of its ratio: below anything heard, above "block".
    np.testing.assert_allclose(result.presence[2], 0.25 * UNHEARD_WEIGHT, rtol=0.02)
    assert result.ranking() == [0, 2, 1]


def test_verified_scan_streams_and_from_estimates_agree(monkeypatch):
    """Block sizes that straddle windows and frames change nothing; neither does scanning from estimates."""
    from omnisep.apply import separate_tensor
    from omnisep.queries import normalize
    from omnisep.scan import Verification

    torch.manual_seed(4)
    model = SeparateNet(SeparateNetConfig(ngf=4, depth=3, k=4, emb_dim=EMB_DIM)).eval()
    bank = QueryBank(["a", "b", "c"], torch.randn(3, EMB_DIM))
    wave = (0.3 * np.random.default_rng(5).standard_normal(int(3.7 * SR))).astype(np.float32)

    class SpectralEncoder:  # an embedding that depends on the clip: its first 8 DFT magnitudes
        def embed(self, modality, clips, sample_rate=None):
            spectra = [np.abs(np.fft.rfft(np.asarray(c, np.float64)))[1:9] for c in clips]
            return torch.nn.functional.normalize(torch.tensor(np.array(spectra), dtype=torch.float32), dim=1)

    check = Verification(SpectralEncoder(), normalize(bank.embeddings), top=2, window_seconds=1.2)
    monkeypatch.setattr("omnisep.scan.STREAM_BLOCK_SECONDS", 0.7)
    streamed = scan(SimpleNamespace(model=model, bank=bank), wave, SR, frame_seconds=0.4, verify=check)
    estimates = separate_tensor(model, torch.from_numpy(wave), normalize(bank.embeddings)).numpy()
    direct = scan_estimates(bank.labels, estimates, wave, 0.4, check)
    assert streamed.similarity.shape == (3, 3)  # windows at 0, 1.2, 2.4 s (the last takes 1.3 s)
    assert ((streamed.similarity > 1e-3).sum(axis=0) <= 2).all()  # the others: UNHEARD_WEIGHT
    for field in ("energy_ratio", "evidence", "similarity", "presence", "window_starts"):
        np.testing.assert_allclose(getattr(streamed, field), getattr(direct, field), rtol=1e-5, atol=1e-7)



class LoudnessTagger:
    """A stand-in for omnisep.tagger.Tagger: labels in another order than the bank's and fixed logits, so
    the test knows each probability: p(pass) = sigmoid(0) = 0.5, p(half) = sigmoid(log 3) = 0.75,
    p(block) = sigmoid(-log 3) = 0.25; "extra" is not in the bank."""

    labels = ["extra", "block", "half", "pass"]

    def __init__(self):
        self.windows: list[int] = []

    def window_logits(self, blocks):
        self.windows.append(blocks.shape[1])
        return torch.tensor([[5.0, -math.log(3.0), math.log(3.0), 0.0]])


def test_a_tagger_weighs_the_scan_by_its_probability_of_each_label_in_the_window(gated, monkeypatch):
    from omnisep.queries import normalize
    from omnisep.scan import Verification

    monkeypatch.setattr("omnisep.tagger.block_features", lambda backbone, wave, rate=SR, pooling="embedding": torch.zeros(2, 512))
    tagger = LoudnessTagger()
    rows = normalize(gated_bank().embeddings)
    only = Verification(None, rows, window_seconds=1.0, listen=False, tagger=tagger, tagger_power=2.0, labels=["pass", "block", "half"])
    wave = noise_with_gap(seconds=3.2, gap=(1.0, 2.0))
    result = scan(gated, wave, SR, frame_seconds=0.5, verify=only)
    assert len(tagger.windows) == 2  # the silent window is not tagged
    assert only.describe() == "the sound tagger heard the mixture (probability^2), per 1 s window"
    expected = np.array([0.5, 0.25, 0.75]) ** 2
    np.testing.assert_allclose(result.similarity[:, [0, 2]], np.repeat(expected[:, None], 2, 1), atol=1e-6)
    np.testing.assert_allclose(result.presence, [0.25, 0.0, 0.25 * 0.5625], atol=3e-3)
    # Both witnesses: the listening weight times the tagger's.
    encoder = ListeningEncoder(gated_bank().embeddings[2])
    both = Verification(encoder, rows, window_seconds=1.0, power=2.0, tagger=LoudnessTagger(), tagger_power=1.0,
                        labels=["pass", "block", "half"])
    combined = scan(gated, wave, SR, frame_seconds=0.5, verify=both)
    np.testing.assert_allclose(combined.similarity[:, 0], np.array([0.25, 0.0, 1.0]) * [0.5, 0.25, 0.75], atol=1e-6)


def test_a_tagger_must_know_every_label_of_the_bank():
    from omnisep.queries import normalize
    from omnisep.scan import Verification

    rows = normalize(gated_bank().embeddings)
    with pytest.raises(OmniSepError, match="does not know the labels owl"):
        Verification(None, rows, listen=False, tagger=LoudnessTagger(), labels=["pass", "owl", "half"])
    with pytest.raises(ValueError, match="needs a tagger"):
        Verification(None, rows, listen=False)


class WindowTagger:
    """A stand-in tagger whose logits say what its window holds: "loud" from the window's RMS, "long" from
    its length (features made by the patched block_features below)."""

    labels = ["long", "loud"]

    def window_logits(self, blocks):
        rms, seconds = blocks[0, 0]
        return torch.stack([4.0 * (seconds - 1.1), 20.0 * (rms - 0.1)])[None]


def _window_features(backbone, wave, rate=SR, pooling="embedding"):
    wave = np.asarray(wave, dtype=np.float64)
    return torch.tensor([[np.sqrt(np.mean(wave**2)), wave.size / SR]], dtype=torch.float32)


def test_mixture_tags_are_the_largest_over_windows_cut_as_the_scans_whatever_the_blocks(monkeypatch, tmp_path):
    import soundfile as sf

    from omnisep.queries import normalize
    from omnisep.scan import MixtureTags, Verification, mixture_tags, mixture_tags_file

    monkeypatch.setattr("omnisep.tagger.block_features", _window_features)
    rows = normalize(torch.randn(2, EMB_DIM))
    verification = Verification(None, rows, window_seconds=1.0, listen=False, tagger=WindowTagger(), labels=["loud", "long"])
    rng = np.random.default_rng(3)
    wave = (0.01 * rng.standard_normal(int(3.2 * SR))).astype(np.float32)
    wave[int(1.2 * SR) : int(1.8 * SR)] *= 30.0  # loud only inside the second window
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    tags = mixture_tags(verification, wave, SR)
    assert list(tags) == ["loud", "long"]  # the verification's (the bank's) labels, in its order
    loudest = np.sqrt(np.mean(np.square(wave[SR : 2 * SR], dtype=np.float64)))
    assert tags["loud"] == pytest.approx(sigmoid(20 * (loudest - 0.1)), abs=1e-5) and tags["loud"] > 0.9
    # 3.2 s in 1 s windows: the last takes the 0.2 s remainder (less than a quarter window) -> 1.2 s long.
    assert tags["long"] == pytest.approx(sigmoid(4 * 0.1), abs=1e-5)
    longer = np.concatenate([wave, wave[: int(0.1 * SR)]])  # 3.3 s: the 0.3 s remainder is a window of its own
    assert mixture_tags(verification, longer, SR)["long"] == pytest.approx(sigmoid(4 * -0.1), abs=1e-5)
    # Pushed in odd blocks, the same numbers; stereo at another rate, streamed from a file, nearly so.
    stream = MixtureTags(verification)
    for start in range(0, wave.size, 3001):
        stream.push(wave[start : start + 3001])
    assert stream.finish() == pytest.approx(tags, abs=1e-6)
    from omnisep.audio import resample

    stereo = np.stack([resample(wave, SR, 44100)] * 2, axis=1)
    sf.write(tmp_path / "mix.wav", stereo, 44100, subtype="FLOAT")
    assert mixture_tags_file(verification, tmp_path / "mix.wav") == pytest.approx(tags, abs=0.02)
    assert mixture_tags(verification, np.zeros(0, np.float32), SR) == {"loud": 0.0, "long": 0.0}
    with pytest.raises(ValueError, match="needs a Verification with a tagger"):
        MixtureTags(Verification(object(), rows))


def test_a_scan_of_some_labels_gives_those_labels_numbers_in_the_banks_order(gated, tmp_path):
    import soundfile as sf

    from omnisep.scan import scan_file

    wave = noise_with_gap()
    whole = scan(gated, wave, SR)
    some = scan(gated, wave, SR, labels=["half", "pass"])
    assert some.labels == ["pass", "half"]  # the bank's order, whatever the order asked
    np.testing.assert_allclose(some.presence, whole.presence[[0, 2]], atol=1e-6)
    np.testing.assert_allclose(some.energy_ratio, whole.energy_ratio[[0, 2]], atol=1e-6)
    path = tmp_path / "noise.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    streamed = scan_file(gated, path, labels=["half"])
    assert streamed.labels == ["half"] and streamed.presence[0] == pytest.approx(0.25, abs=5e-3)
    with pytest.raises(OmniSepError, match="'rain'"):
        scan(gated, wave, SR, labels=["pass", "rain"])
