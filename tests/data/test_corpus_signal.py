import io
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf

from omnisep.data.corpus import SAMPLE_RATE
from omnisep.data.corpus.augment import (
    active_fraction, augment, change_speed, decode, fit_length, set_level, trim_silence,
)
from omnisep.data.corpus.rcc import read_rcc
from omnisep.errors import OmniSepError


def test_set_level_hits_rms_then_limits_peak():
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    out = set_level(tone, rms_db=-20.0)
    assert 20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2))) == pytest.approx(-20.0, abs=0.01)
    # a sine at -1 dBFS RMS would peak at 1.26: it is scaled so the peak is 0.99 instead
    loud = set_level(tone, rms_db=-1.0)
    assert np.max(np.abs(loud)) == pytest.approx(0.99, abs=1e-4)


def test_trim_silence_and_active_fraction():
    burst = np.ones(SAMPLE_RATE // 2, np.float32) * 0.5
    audio = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), burst, np.zeros(SAMPLE_RATE, np.float32)])
    trimmed = trim_silence(audio)
    assert len(trimmed) == len(burst)  # frames of 400 samples align with the burst's edges here
    assert active_fraction(audio) == pytest.approx(0.2, abs=0.01)


def test_fit_length_and_change_speed():
    x = np.arange(10, dtype=np.float32)
    assert fit_length(x, 4).tolist() == [0, 1, 2, 3]
    assert fit_length(x, 12).tolist() == list(range(10)) + [0, 0]
    y = change_speed(np.random.default_rng(0).standard_normal(16000).astype(np.float32), 1.25)
    assert len(y) == pytest.approx(16000 / 1.25, abs=2)


def test_decode_resamples_bytes_to_16k_mono():
    buffer = io.BytesIO()
    stereo = np.zeros((44100, 2), np.float32)
    stereo[:, 0] = 0.5
    sf.write(buffer, stereo, 44100, format="WAV", subtype="FLOAT")
    audio = decode(buffer.getvalue(), name="x.wav")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == SAMPLE_RATE
    assert float(np.median(audio)) == pytest.approx(0.25, abs=1e-3)


def test_decode_rejects_garbage_with_the_name():
    with pytest.raises(OmniSepError, match="broken.ogg"):
        decode(b"not audio at all" * 10, name="broken.ogg")


def test_augment_is_seeded_and_bounded():
    noise = np.random.default_rng(1).standard_normal(SAMPLE_RATE * 2).astype(np.float32) * 0.1
    a = augment(noise, np.random.default_rng(7))
    b = augment(noise, np.random.default_rng(7))
    assert np.array_equal(a, b)
    assert np.max(np.abs(a)) <= 0.99 + 1e-6
    rms_db = 20 * np.log10(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
    assert -30.5 <= rms_db <= -15.5


def _rcc_bytes(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A version-3 Qt resource bundle with one folder 'snd' holding `files` (name -> (data, compress))."""
    names, name_offsets = b"", {}
    for name in ["snd", *files]:
        name_offsets[name] = len(names)
        encoded = name.encode("utf-16-be")
        names += struct.pack(">HI", len(name), 0) + encoded
    data, data_offsets = b"", {}
    for name, (payload, compress) in files.items():
        blob = struct.pack(">I", len(payload)) + zlib.compress(payload) if compress else payload
        data_offsets[name] = len(data)
        data += struct.pack(">I", len(blob)) + blob
    tree = b""
    # node 0: root dir with 1 child at index 1; node 1: 'snd' dir with children from index 2
    tree += struct.pack(">IHII", 0, 2, 1, 1) + b"\0" * 8
    tree += struct.pack(">IHII", name_offsets["snd"], 2, len(files), 2) + b"\0" * 8
    for name, (_, compress) in files.items():
        tree += struct.pack(">IHHHI", name_offsets[name], 1 if compress else 0, 0, 0, data_offsets[name]) + b"\0" * 8
    header_size = 20
    data_at = header_size
    names_at = data_at + len(data)
    tree_at = names_at + len(names)
    header = b"qres" + struct.pack(">IIII", 3, tree_at, data_at, names_at)
    return header + data + names + tree


def test_read_rcc_plain_and_compressed(tmp_path):
    path = tmp_path / "bundle.rcc"
    path.write_bytes(_rcc_bytes({"a.ogg": (b"OggS-plain", False), "b.wav": (b"RIFF" + b"x" * 300, True)}))
    files = read_rcc(path)
    assert files == {"/snd/a.ogg": b"OggS-plain", "/snd/b.wav": b"RIFF" + b"x" * 300}


def test_read_rcc_rejects_other_files(tmp_path):
    path = tmp_path / "not.rcc"
    path.write_bytes(b"PK\x03\x04 zip, not rcc")
    with pytest.raises(OmniSepError, match="not.rcc"):
        read_rcc(path)
