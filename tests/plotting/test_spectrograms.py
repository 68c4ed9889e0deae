import numpy as np
import pytest
from PIL import Image

from omnisep.audio import save_audio
from omnisep.plotting.spectrograms import file_spectrogram, plot_separation, spectrogram

RATE = 16000


def test_a_tone_peaks_at_its_frequency_with_the_hand_computed_level():
    t = np.arange(2 * RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    spec = spectrogram(tone, RATE, n_fft=1024, max_columns=100)
    hop = 2 * RATE // 100  # more than n_fft // 4, so max_columns decides
    assert spec.db.shape == (513, 100)
    np.testing.assert_allclose(spec.times[:3], [0, hop / RATE, 2 * hop / RATE])
    column = spec.db[:, 10]
    assert spec.freqs[np.argmax(column)] == pytest.approx(1000, abs=RATE / 1024)
    # a sine of amplitude A through a normalised Hann window: power (A/2)^2 at its bin
    assert column.max() == pytest.approx(20 * np.log10(0.25), abs=0.2)


def test_file_and_array_spectrograms_agree_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((2, 3 * RATE))).astype(np.float32)
    save_audio(tmp_path / "x.wav", audio, RATE, subtype="FLOAT")
    from_array = spectrogram(audio, RATE, max_columns=50)
    from_file = file_spectrogram(tmp_path / "x.wav", max_columns=50)
    np.testing.assert_allclose(from_file.db, from_array.db, atol=1e-3)
    quiet = spectrogram(audio * 0.01, RATE, max_columns=50)
    assert np.median(from_array.db - quiet.db) == pytest.approx(40.0, abs=0.05)  # the 1e-12 floor shifts quiet bins
    path = plot_separation(tmp_path / "plots" / "s.png", [("mixture", from_array), ("quiet", quiet)], title="x")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.height > image.width / 3
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["s.png"]
