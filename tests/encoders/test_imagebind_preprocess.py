"""ImageBind's preprocessing: Kaldi fbank, clip sampling, image transform, CLIP tokenizer."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch
from PIL import Image

from omnisep.encoders.imagebind.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    FBANK_MEAN,
    FBANK_STD,
    audio_to_fbank_clips,
    clip_bounds,
    image_to_pixels,
    kaldi_fbank,
)
from omnisep.encoders.imagebind.tokenizer import ClipTokenizer


def kaldi_reference(wave, rate=16000, bins=128):
    """Kaldi's compute-fbank-feats written out plainly, frame by frame, in float64.

    25 ms frames every 10 ms fully inside the signal; per frame: remove the DC
    offset, pre-emphasise (x[i] -= 0.97 x[i-1], x[0] -= 0.97 x[0]), Hanning
    window 0.5 - 0.5 cos(2 pi n / (N - 1)), zero-pad to 512, power spectrum;
    mel = 1127 ln(1 + f / 700); bank m spans mel_low + m*d .. mel_low + (m+2)*d
    with d = (mel(8000) - mel(20)) / (bins + 1), triangular in mel, over FFT
    bins 0..255 (Nyquist excluded); log(max(energy, float32 epsilon)).
    """
    size, shift, fft = int(0.025 * rate), int(0.010 * rate), 512
    mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    low, high = mel(20.0), mel(rate / 2)
    delta = (high - low) / (bins + 1)
    weights = np.zeros((bins, fft // 2))
    for m in range(bins):
        left, centre, right = low + m * delta, low + (m + 1) * delta, low + (m + 2) * delta
        for i in range(fft // 2):
            value = mel(i * rate / fft)
            if left < value < right:
                weights[m, i] = (value - left) / (centre - left) if value <= centre else (right - value) / (right - centre)
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / (size - 1)) for n in range(size)])
    rows = []
    for f in range(1 + (len(wave) - size) // shift):
        frame = np.asarray(wave[f * shift : f * shift + size], dtype=np.float64).copy()
        frame -= frame.mean()
        for i in range(size - 1, 0, -1):
            frame[i] -= 0.97 * frame[i - 1]
        frame[0] -= 0.97 * frame[0]
        spectrum = np.fft.fft(np.concatenate([frame * window, np.zeros(fft - size)]))
        power = np.abs(spectrum[: fft // 2]) ** 2
        rows.append(np.log(np.maximum(weights @ power, np.finfo(np.float32).eps)))
    return np.array(rows)


def test_fbank_matches_a_plain_kaldi_computation():
    rng = np.random.default_rng(3)
    t = np.arange(int(0.5 * 16000)) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3100 * t) + 0.02 * rng.standard_normal(t.size) + 0.05)
    ours = kaldi_fbank(torch.tensor(wave, dtype=torch.float32)).numpy()
    reference = kaldi_reference(wave.astype(np.float32))
    assert ours.shape == reference.shape == (1 + (8000 - 400) // 160, 128)
    assert np.abs(ours - reference).max() < 2e-3


def test_clip_bounds_follow_the_constant_clips_sampler():
    second = 16000
    assert clip_bounds(10 * second) == [(0, 32000), (64000, 96000), (128000, 160000)]
    assert clip_bounds(3 * second) == [(0, 32000), (8000, 40000), (16000, 48000)]
    assert clip_bounds(int(1.5 * second)) == [(0, 32000)] * 3  # short file: the same clip three times
    # 5.01 s: latest start 3.01 s, but 3.01 is the float 3.00999999999999978...; in exact fractions
    # 1.505 s * 16000 falls a hair short of 24080 and truncates to 24079, as in the reference
    assert clip_bounds(80160) == [(0, 32000), (24079, 56079), (48159, 80159)]


def test_fbank_clips_are_padded_normalised_and_leave_the_input_alone():
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32) + 0.2
    before = wave.copy()
    clips = audio_to_fbank_clips(wave)
    assert clips.shape == (3, 1, 128, 204)
    assert np.array_equal(wave, before)
    # 2 s = 198 frames; frames 198..203 are zero-padded fbank, i.e. (0 - mean) / std after normalisation
    assert torch.allclose(clips[:, :, :, 198:], torch.full((3, 1, 128, 6), (0 - FBANK_MEAN) / FBANK_STD))
    first = kaldi_fbank(torch.from_numpy(wave[:32000] - wave[:32000].mean())).T
    assert torch.allclose(clips[0, 0, :, :198], (first - FBANK_MEAN) / FBANK_STD, atol=1e-5)


def test_image_transform_resizes_short_side_crops_centre_and_normalises():
    image = np.zeros((200, 300, 3), np.uint8)
    image[:, :150] = (255, 0, 0)  # left half red, right half green
    image[:, 150:] = (0, 255, 0)
    pixels = image_to_pixels(image)
    assert pixels.shape == (3, 224, 224)
    # 300 x 200 -> 336 x 224, crop x from 56 to 280: the red/green edge (x = 168) lands at column 112
    expected_red = torch.tensor([(1 - CLIP_MEAN[0]) / CLIP_STD[0], (0 - CLIP_MEAN[1]) / CLIP_STD[1], (0 - CLIP_MEAN[2]) / CLIP_STD[2]])
    assert torch.allclose(pixels[:, 100, 10], expected_red, atol=1e-5)
    assert torch.allclose(pixels[1, 100, 200], torch.tensor((1 - CLIP_MEAN[1]) / CLIP_STD[1]), atol=1e-5)
    assert pixels[1, 100, 110] < 0 < pixels[1, 100, 114]
    manual = np.asarray(Image.fromarray(image).resize((336, 224), Image.BICUBIC).crop((56, 0, 280, 224)), np.float32) / 255
    manual = (torch.from_numpy(manual).permute(2, 0, 1) - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    assert torch.allclose(pixels, manual, atol=1e-6)


# -- tokenizer -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_tokenizer():
    return ClipTokenizer()


def test_bundled_vocabulary_gives_clip_ids(clip_tokenizer):
    assert clip_tokenizer.vocab_size == 49408
    assert (clip_tokenizer.sot, clip_tokenizer.eot) == (49406, 49407)
    rows = clip_tokenizer(["a photo of a cat", "  A   PHOTO of a Cat ", "a dog"])
    assert rows.shape == (3, 77) and rows.dtype == torch.int64
    assert rows[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert rows[0, 7:].eq(0).all()
    assert torch.equal(rows[0], rows[1])
    assert rows[2, :4].tolist() == [49406, 320, 1929, 49407]
    # ids of the byte symbols: 'a' is printable byte 97, listed after the 33 ids of bytes 0x21..; '!' is id 0
    assert clip_tokenizer.encode("!") == [0 + 256]  # a lone symbol gets its '</w>' form


def test_long_text_is_truncated_and_still_ends_with_eot(clip_tokenizer):
    row = clip_tokenizer(["dog " * 200])[0]
    assert row[0] == 49406 and row[76] == 49407 and (row[1:76] != 0).all()


def test_html_entities_and_mojibake_are_cleaned(clip_tokenizer):
    assert clip_tokenizer.encode("rock &amp; roll") == clip_tokenizer.encode("rock & roll")
    assert clip_tokenizer.encode("cafÃ©") == clip_tokenizer.encode("café")  # ftfy repairs UTF-8 read as Latin-1


def test_synthetic_vocabulary_merges_in_rank_order(tmp_path):
    path = tmp_path / "tiny_bpe.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("#version: tiny\nh e\nl o</w>\nhe l\n")
    tokenizer = ClipTokenizer(path, num_merges=None, context_length=8)
    # ids: 256 byte symbols, 256 '</w>' forms, merges he=512, lo</w>=513, hel=514, sot=515, eot=516.
    # "hello": h e l l o</w> -> he l l o</w> -> he l lo</w> -> hel lo</w>
    assert tokenizer.encode("hello") == [514, 513]
    assert tokenizer(["hello"]).tolist() == [[515, 514, 513, 516, 0, 0, 0, 0]]
    # no merge applies to "ol": 'o' then 'l</w>' (byte 'o' = id 78, 'l' = id 75 -> '</w>' form 256 + 75)
    assert tokenizer.encode("ol") == [78, 256 + 75]


def test_unreadable_vocabulary_is_a_user_error(tmp_path):
    from omnisep.errors import OmniSepError

    (tmp_path / "v.gz").write_bytes(b"not gzip")
    with pytest.raises(OmniSepError, match="v.gz"):
        ClipTokenizer(tmp_path / "v.gz")
