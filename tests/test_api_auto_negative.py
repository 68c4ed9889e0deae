"""`Separator.separate(..., negative="auto")` and `separate_file` with the band model."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from omnisep.api import Query, Separator
from omnisep.states import NEGATIVE_DEFAULTS
from omnisep.errors import OmniSepError
from omnisep import negatives
from omnisep.negatives import AutoNegative

SR = 16000


@pytest.fixture()
def separator(band_separator):
    """A Separator around the band model, without loading any checkpoint or encoder."""
    instance = Separator.__new__(Separator)
    instance.model, instance.bank = band_separator.model, band_separator.bank
    instance.path = "band-model"
    instance._bank_rows = {label: row for row, label in enumerate(band_separator.bank.labels)}
    instance.encoder = None
    instance.negative_defaults = dict(NEGATIVE_DEFAULTS)  # what a model that records none gets
    instance.contrast, instance.background = 0.0, None
    instance.second_look = None
    instance._matcher = None  # no Query-Aug bank knows the band model's labels
    return instance


def test_auto_negative_equals_the_oracle_negative(separator, band_separator):
    low, high = band_separator.tones()
    mixture = low + high
    auto = separator.separate(mixture, SR, text="low", negative="auto")
    oracle = separator.separate(mixture, SR, text="low", negative_text="high", alpha=0.25)  # the automatic default
    plain = separator.separate(mixture, SR, text="low")
    assert [c.label for c in auto.negatives] == ["high"]
    assert auto.query_label == "low - high (auto)"
    assert plain.negatives is None
    np.testing.assert_allclose(auto.target, oracle.target, atol=1e-6)
    assert np.abs(auto.target - plain.target).max() > 0.01
    np.testing.assert_allclose(auto.target + auto.residual, mixture, atol=1e-6)


def test_streamed_file_chooses_the_same(separator, band_separator, tmp_path):
    low, high = band_separator.tones(seconds=3.0)
    path = tmp_path / "mix.wav"
    sf.write(path, np.stack([low + high, low + high], axis=1), SR, subtype="FLOAT")
    query = Query(text="low", auto_negative=AutoNegative())
    rows = separator.separate_file(path, [query], [tmp_path / "t.wav"], [tmp_path / "r.wav"])
    assert rows[0]["query"] == "low - high (auto)"
    assert [n["label"] for n in rows[0]["negatives"]] == ["high"]
    target, _ = sf.read(tmp_path / "t.wav", dtype="float32", always_2d=True)
    expected = separator.separate(low + high, SR, text="low", negative_text="high", alpha=0.25).target
    np.testing.assert_allclose(target[:, 0], expected, atol=1e-4)


def test_auto_and_explicit_negatives_do_not_mix(separator, band_separator):
    low, high = band_separator.tones(seconds=1.0)
    with pytest.raises(OmniSepError, match="not both"):
        separator.separate(low + high, SR, text="low", negative="auto", negative_text="high")


def test_a_logit_mode_model_subtracts_the_chosen_label_from_the_logits(separator, band_separator):
    low, high = band_separator.tones()
    mixture = low + high
    separator.negative_defaults = {**NEGATIVE_DEFAULTS, "mode": "logit", "alpha": 2.0, "auto_alpha": 1.0, "auto_count": 1}
    auto = separator.separate(mixture, SR, text="low", negative="auto")
    oracle = separator.separate(mixture, SR, text="low", negative_text="high", alpha=1.0)  # the model's auto_alpha
    assert [c.label for c in auto.negatives] == ["high"]
    np.testing.assert_allclose(auto.target, oracle.target, atol=1e-6)
    vector_mode = separator.separate(mixture, SR, text="low", negative_text="high", alpha=1.0, negative_mode="proportional")
    assert np.abs(oracle.target - vector_mode.target).max() > 1e-3  # the logit mode is not eq. 4


class BandEar:
    """A query encoder that hears where the energy is: [low band, high band, 0, 0], normalised."""

    audio_sample_rate = 16000
    min_audio_seconds = 0.1

    def embed(self, modality, clips, sample_rate=None):
        import torch

        heard = []
        for clip in clips:
            power = np.abs(np.fft.rfft(np.asarray(clip, np.float64))) ** 2
            split = int(2000 / (sample_rate / 2) * (power.size - 1))
            heard.append([power[:split].sum(), power[split:].sum(), 0.0, 0.0])
        return torch.nn.functional.normalize(torch.tensor(heard, dtype=torch.float32) + 1e-12, dim=1)


def test_a_verified_scan_subtracts_nothing_that_is_not_heard(separator, band_separator):
    """Only the low tone sounds. The plain scan credits "hum" (mask 0.5: a quarter of the energy) and
    subtracts it; a model that records a verification listens to what "hum" separated, hears the
    low tone, and subtracts nothing."""
    low, _ = band_separator.tones(seconds=2.0)
    plain = separator.separate(low, SR, text="low", negative="auto")
    assert [c.label for c in plain.negatives] == ["hum"]

    separator.encoder = BandEar()
    separator.config = {"inference": {"scan": {"verify": {"top": 4, "window_seconds": 1.0}}}}
    verified = separator.separate(low, SR, text="low", negative="auto")
    assert verified.negatives == []
    np.testing.assert_allclose(verified.target, separator.separate(low, SR, text="low").target, atol=1e-6)


def test_the_residual_names_the_interferer_without_a_scan(separator, band_separator, tmp_path, monkeypatch):
    """What "low" leaves of low + high is mostly the high tone: the encoder hears the high band, and the
    nearest label that is not "low" (nor its synonym "low-ish") is "high", the oracle's negative."""
    import omnisep.scan

    monkeypatch.setattr(omnisep.scan, "scan", lambda *a, **k: pytest.fail("the residual source needs no scan"))
    monkeypatch.setattr(omnisep.scan, "scan_file", lambda *a, **k: pytest.fail("the residual source needs no scan"))
    separator.encoder = BandEar()
    low, high = band_separator.tones(seconds=6.0)
    mixture = low + high
    setting = AutoNegative(source="residual")
    auto = separator.separate(mixture, SR, text="low", negative=setting)
    oracle = separator.separate(mixture, SR, text="low", negative_text="high", alpha=0.25)
    assert [c.label for c in auto.negatives] == ["high"]
    assert auto.negatives[0].presence > 0.9  # the cosine of what was heard with "high"'s row
    np.testing.assert_allclose(auto.target, oracle.target, atol=1e-6)

    # A model that records auto_source "residual" does the same for negative="auto"; a streamed file
    # (stereo, 44.1 kHz) chooses the same label with flat memory.
    separator.negative_defaults = {**separator.negative_defaults, "auto_source": "residual"}
    assert [c.label for c in separator.separate(mixture, SR, text="low", negative="auto").negatives] == ["high"]
    import soxr

    stereo = soxr.resample(mixture, SR, 44100)
    path = tmp_path / "mix.wav"
    sf.write(path, np.stack([stereo, stereo], axis=1), 44100, subtype="FLOAT")
    rows = separator.separate_file(path, [Query(text="low", auto_negative=AutoNegative())], [tmp_path / "t.wav"])
    assert [n["label"] for n in rows[0]["negatives"]] == ["high"]


def test_scan_and_residual_together_name_the_interferer(separator, band_separator):
    """source="scan+residual" runs the scan and listens to what the query leaves; for low + high both
    point at "high", so the sum names it and the result is the oracle's."""
    separator.encoder = BandEar()
    low, high = band_separator.tones(seconds=6.0)
    mixture = low + high
    auto = separator.separate(mixture, SR, text="low", negative=AutoNegative(source="scan+residual"))
    oracle = separator.separate(mixture, SR, text="low", negative_text="high", alpha=0.25)
    assert [c.label for c in auto.negatives] == ["high"]
    # The presence reported is the scan's (about 0.35) plus the residual's cosine with "high" (over 0.9).
    assert auto.negatives[0].presence > 1.2
    np.testing.assert_allclose(auto.target, oracle.target, atol=1e-6)
    separator.negative_defaults = {**separator.negative_defaults, "auto_source": "scan+residual"}
    assert separator.separate(mixture, SR, text="low", negative="auto").negatives == auto.negatives


def test_the_residual_of_a_clean_recording_names_nothing(separator, band_separator):
    """Only the low tone sounds: what "low" leaves is its own leak (-15 dB), heard as the low band,
    which no other label resembles (cosine 0 with "high" and "hum"), so nothing is subtracted; a
    residual under -30 dB is not even listened to."""
    separator.encoder = BandEar()
    low, _ = band_separator.tones(seconds=2.0)
    setting = AutoNegative(source="residual")
    result = separator.separate(low, SR, text="low", negative=setting)
    assert result.negatives == []
    np.testing.assert_allclose(result.target, separator.separate(low, SR, text="low").target, atol=1e-6)
    silent = negatives.ResidualEvidence(BandEar(), SR)
    silent.target.write(low)
    silent.write(low * 0.01)  # -40 dB of the target
    assert silent.embedding() is None
    with pytest.raises(OmniSepError, match=r"one of scan, residual, scan\+residual, residual-tagger, scan\*residual-tagger, not 'mixture'"):
        AutoNegative(source="mixture")


def test_the_residual_is_left_by_the_query_as_users_get_it(separator, band_separator):
    """The residual the encoder hears is the one the plain query leaves, query contrast included (as the
    evaluation measured it), although a query with a negative gets no contrast."""
    from omnisep.queries import background_query

    separator.contrast = 0.5
    separator.background = background_query(band_separator.bank.embeddings)
    embedded = separator.prepare([Query(text="low", auto_negative=AutoNegative(source="residual"))], SR)
    assert embedded[0].contrast == 0.0
    heard = []

    def hear(items, sink):
        heard.extend(items)
        return [None]  # nothing audible left

    out = separator.choose_negatives(embedded, lambda: pytest.fail("the residual source needs no scan"), hear)
    assert heard[0].contrast == 0.5 and heard[0].background is not None
    assert out[0].negatives == [] and out[0].contrast == 0.5  # nothing to subtract: the plain query, contrast and all


class BandTagger:
    """A stand-in for the scan's Verification with a sound tagger: hears the band where the energy is,
    "low" or "high" with probability 0.9, every other label 0.1 (bank order: low, high, low-ish, hum)."""

    def __init__(self):
        self.heard = 0

    def tag(self, clip):
        self.heard += 1
        low, high = BandEar().embed("audio", [clip], sample_rate=SR)[0, :2].tolist()
        tags = np.full(4, 0.1, dtype=np.float32)
        tags[0 if low > high else 1] = 0.9
        return tags


def test_the_tagger_hears_the_interferer_in_what_the_query_leaves(separator, band_separator, tmp_path, monkeypatch):
    """source="residual-tagger": what "low" leaves of low + high is mostly the high tone, which the tagger
    names; no scan is run, and the result is the oracle's. A streamed file at 44.1 kHz chooses the same."""
    import omnisep.scan

    monkeypatch.setattr(omnisep.scan, "scan", lambda *a, **k: pytest.fail("the residual-tagger source needs no scan"))
    monkeypatch.setattr(omnisep.scan, "scan_file", lambda *a, **k: pytest.fail("the residual-tagger source needs no scan"))
    separator._tagging = BandTagger()
    low, high = band_separator.tones(seconds=6.0)
    mixture = low + high
    auto = separator.separate(mixture, SR, text="low", negative=AutoNegative(source="residual-tagger"))
    oracle = separator.separate(mixture, SR, text="low", negative_text="high", alpha=0.25)
    assert [c.label for c in auto.negatives] == ["high"]
    assert auto.negatives[0].presence == pytest.approx(0.9)
    assert separator._tagging.heard == 2  # 6 s in 4 s windows: one, and the 2 s remainder
    np.testing.assert_allclose(auto.target, oracle.target, atol=1e-6)
    import soxr

    stereo = soxr.resample(mixture, SR, 44100)
    path = tmp_path / "mix.wav"
    sf.write(path, np.stack([stereo, stereo], axis=1), 44100, subtype="FLOAT")
    separator.negative_defaults = {**separator.negative_defaults, "auto_source": "residual-tagger"}
    rows = separator.separate_file(path, [Query(text="low", auto_negative=AutoNegative())], [tmp_path / "t.wav"])
    assert [n["label"] for n in rows[0]["negatives"]] == ["high"]


def test_the_scan_times_the_residuals_tags_names_the_interferer(separator, band_separator):
    """source="scan*residual-tagger": the scan's presence of "high" (about 0.35) times the tagger's 0.9."""
    separator._tagging = BandTagger()
    low, high = band_separator.tones(seconds=6.0)
    mixture = low + high
    auto = separator.separate(mixture, SR, text="low", negative=AutoNegative(source="scan*residual-tagger"))
    assert [c.label for c in auto.negatives] == ["high"]
    assert auto.negatives[0].presence == pytest.approx(0.9 * 0.353, abs=0.01)
    oracle = separator.separate(mixture, SR, text="low", negative_text="high", alpha=0.25)
    np.testing.assert_allclose(auto.target, oracle.target, atol=1e-6)


def test_a_model_without_a_tagger_borrows_the_shipped_one(separator, band_separator):
    """A model whose scan records no tagger gets the shipped one for the residual-tagger source, which must
    know the bank's labels; the band model's labels are not the corpus's, so that is refused plainly."""
    separator.config = {}
    with pytest.raises(OmniSepError, match="the tagger does not know the labels low, high, low-ish"):
        separator._residual_tagger()
