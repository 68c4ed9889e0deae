"""The toy encoder, and through it the QueryEncoder contract shared by every encoder."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from omnisep.encoders import get_encoder, list_encoders
from omnisep.encoders.toy import ToyEncoder
from omnisep.errors import OmniSepError

RATE = 16000


def tone(freq, seconds=1.0, rate=RATE, amplitude=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_outputs_are_normalised_float32_cpu_without_grad():
    encoder = get_encoder("toy")
    for out in (
        encoder.embed_text(["dog barking", "violin"]),
        encoder.embed_image([np.zeros((8, 8, 3), np.uint8), np.full((5, 9, 3), 255, np.uint8)]),
        encoder.embed_audio([tone(440), tone(880)], RATE),
    ):
        assert out.shape == (2, 64) and out.dtype == torch.float32 and out.device.type == "cpu"
        assert not out.requires_grad
        assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-6)


def test_text_is_deterministic_and_ignores_case_and_spacing():
    a = ToyEncoder().embed_text(["Dog  Barking", "dog barking", "violin"])
    b = ToyEncoder().embed_text(["dog barking"])
    assert torch.equal(a[0], a[1]) and torch.equal(a[1], b[0])
    assert abs(float(a[0] @ a[2])) < 0.6  # unrelated texts are (nearly) orthogonal random vectors
    # fixed across machines and versions: a stable hash seeds PCG64
    first = ToyEncoder(dim=4).embed_text(["violin"])[0]
    expected = np.random.default_rng(
        int.from_bytes(__import__("hashlib").sha256(b"violin").digest()[:8], "little")
    ).standard_normal(4)
    assert torch.allclose(first, torch.tensor(expected / np.linalg.norm(expected), dtype=torch.float32))


def test_similar_images_and_sounds_are_closer_than_different_ones():
    encoder = ToyEncoder()
    red, red2, blue = np.zeros((3, 20, 20, 3), np.uint8)
    red[..., 0], red2[..., 0], blue[..., 2] = 230, 220, 230
    images = encoder.embed_image([red, red2, blue])
    assert float(images[0] @ images[1]) > float(images[0] @ images[2]) + 0.3
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(RATE)).astype(np.float32)
    sounds = encoder.embed_audio([tone(440), 0.2 * tone(445), noise], RATE)  # loudness must not matter
    assert float(sounds[0] @ sounds[1]) > 0.95
    assert float(sounds[0] @ sounds[1]) > float(sounds[0] @ sounds[2]) + 0.3


def test_paths_are_accepted_for_images_and_audio(tmp_path):
    encoder = ToyEncoder()
    array = np.zeros((10, 10, 3), np.uint8)
    array[..., 1] = 200
    Image.fromarray(array).save(tmp_path / "green.png")
    assert torch.allclose(encoder.embed_image([tmp_path / "green.png"]), encoder.embed_image([array]), atol=1e-6)
    # 8 kHz stereo file -> downmixed and resampled to the encoder's 16 kHz
    clip8k = tone(440, rate=8000)
    sf.write(tmp_path / "tone.wav", np.stack([clip8k, clip8k], axis=1), 8000, subtype="FLOAT")
    from_file = encoder.embed_audio([str(tmp_path / "tone.wav")])
    from_array = encoder.embed_audio([tone(440)], RATE)
    assert float(from_file[0] @ from_array[0]) > 0.99


def test_identity_is_fixed():
    identity = ToyEncoder().identity()
    assert identity["name"] == "toy" and identity["dim"] == 64 and identity["version"] == "1"
    assert identity == ToyEncoder().identity()
    assert identity["weights_hash"] != ToyEncoder(dim=32).identity()["weights_hash"]
    assert len(identity["weights_hash"]) == 64


def test_batching_does_not_change_results():
    texts = [f"sound number {i}" for i in range(10)]
    assert torch.equal(ToyEncoder(batch_size=3).embed_text(texts), ToyEncoder(batch_size=64).embed_text(texts))


def test_bad_queries_raise_one_clear_sentence():
    encoder = ToyEncoder()
    with pytest.raises(OmniSepError, match="Text query #2 is empty"):
        encoder.embed_text(["violin", "   "])
    with pytest.raises(OmniSepError, match=r"0\.050 s long; audio queries need at least 0\.1 s"):
        encoder.embed_audio([tone(440, seconds=0.05)], RATE)
    with pytest.raises(OmniSepError, match="NaN"):
        encoder.embed_audio([np.full(RATE, np.nan, np.float32)], RATE)
    with pytest.raises(OmniSepError, match="sample_rate"):
        encoder.embed_audio([tone(440)])
    with pytest.raises(OmniSepError, match="mono"):
        encoder.embed_audio([np.zeros((2, RATE), np.float32)], RATE)
    with pytest.raises(OmniSepError, match="has 10 values but the 'toy' encoder makes 64-d"):
        encoder.check_embedding(np.ones(10), "Embedding file 'q.npy'")
    with pytest.raises(OmniSepError, match="Unknown encoder 'clap'"):
        get_encoder("clap")


def test_short_audio_is_padded_with_a_warning():
    with pytest.warns(UserWarning, match="only 0.50 s long"):
        out = ToyEncoder().embed_audio([tone(440, seconds=0.5)], RATE)
    assert torch.isfinite(out).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ToyEncoder().embed_audio([tone(440, seconds=1.0)], RATE)  # long enough: silent


def test_check_embedding_normalises_a_valid_vector():
    vector = ToyEncoder().check_embedding(np.full(64, 3.0), "q")
    assert torch.allclose(vector, torch.full((64,), 1 / 8.0))


def test_list_encoders_names_all_three():
    assert [e["name"] for e in list_encoders()] == ["bundled", "imagebind", "toy"]
