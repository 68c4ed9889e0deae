"""The sound tagger's file format and block features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from omnisep.errors import OmniSepError
from omnisep.tagger import Tagger, block_features, load_tagger, save_tagger


def small_tagger(labels=("a", "b", "c")) -> Tagger:
    torch.manual_seed(0)
    tagger = Tagger(list(labels), feature_dim=6, hidden=5)
    tagger.mean.copy_(torch.arange(6.0))
    tagger.std.copy_(torch.full((6,), 2.0))
    return tagger.eval()


def test_saved_tagger_loads_to_the_same_outputs_and_records_what_it_was_given(tmp_path):
    tagger = small_tagger()
    path = save_tagger(tmp_path / "t.safetensors", tagger, {"trained_on": {"mixtures": 3}})
    loaded = load_tagger(path)
    features = torch.randn(4, 3, 6)
    torch.testing.assert_close(loaded.window_logits(features), tagger.window_logits(features), rtol=0, atol=0)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["labels"] == ["a", "b", "c"] and meta["trained_on"] == {"mixtures": 3} and meta["format"] == "omnisep-tagger"


def test_a_window_is_as_likely_to_hold_a_label_as_its_most_likely_block():
    tagger = small_tagger()
    blocks = torch.randn(2, 4, 6)
    per_block = tagger(blocks)
    torch.testing.assert_close(tagger.window_logits(blocks), per_block.amax(dim=1))


def test_damaged_or_foreign_tagger_files_are_named(tmp_path):
    path = save_tagger(tmp_path / "t.safetensors", small_tagger())
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "backbone_sha256": "0" * 64}))
    with pytest.raises(OmniSepError, match="another audio backbone"):
        load_tagger(path)
    meta_path.write_text(json.dumps({**meta, "labels": ["a", "b"]}))
    with pytest.raises(OmniSepError, match="does not match its .json"):
        load_tagger(path)
    meta_path.unlink()
    with pytest.raises(OmniSepError, match="needs both the file and its .json"):
        load_tagger(path)
    path.write_bytes(b"not a tensor file")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(OmniSepError, match="cannot be read"):
        load_tagger(path)


def test_block_features_cover_the_audio_in_overlapping_blocks():
    from omnisep.encoders.backbones import load_sfx_cnn

    backbone = load_sfx_cnn()
    wave = (0.1 * np.random.default_rng(0).standard_normal(16000 * 4)).astype(np.float32)
    features = block_features(backbone, wave, 16000)
    # 4 s at 44.1 kHz = 173 frames of 1024 -> blocks of 100 frames every 50: 3 blocks.
    assert features.shape == (3, 512)
    assert torch.isfinite(features).all()
    # The level does not matter: the front end peak-normalises, as the audio query head's does.
    torch.testing.assert_close(block_features(backbone, 0.5 * wave, 16000), features, rtol=1e-4, atol=1e-4)


def test_band_pooling_adds_the_embedding_of_each_frequency_quarter():
    from omnisep.encoders.backbones import load_sfx_cnn
    from omnisep.tagger import POOLINGS

    backbone = load_sfx_cnn()
    wave = (0.1 * np.random.default_rng(1).standard_normal(16000 * 3)).astype(np.float32)
    bands = block_features(backbone, wave, 16000, pooling="bands")
    assert bands.shape == (2, POOLINGS["bands"])
    # Its first part is the embedding itself, so a band tagger only adds to what an embedding tagger reads.
    torch.testing.assert_close(bands[:, :512], block_features(backbone, wave, 16000), rtol=1e-5, atol=1e-5)
    # A tone heard only in the top quarter of the mel axis fires that band and not the lowest.
    t = np.arange(16000 * 3) / 16000
    high = (0.3 * np.sin(2 * np.pi * 6500 * t)).astype(np.float32)
    low = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    quarters = lambda features: features[:, 512:].reshape(-1, 4, 512).mean(dim=(0, 2))  # noqa: E731
    assert quarters(block_features(backbone, high, 16000, pooling="bands"))[3] > quarters(
        block_features(backbone, low, 16000, pooling="bands"))[3]


def test_a_tagger_records_its_pooling_and_refuses_one_it_does_not_know(tmp_path):
    tagger = Tagger(["a", "b"], feature_dim=6, hidden=5, pooling="bands")
    path = save_tagger(tmp_path / "t.safetensors", tagger)
    assert load_tagger(path).pooling == "bands"
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "pooling": "attention"}))
    with pytest.raises(OmniSepError, match="pooling 'attention'"):
        load_tagger(path)
    # Taggers written before poolings existed read the embedding.
    meta.pop("pooling")
    meta_path.write_text(json.dumps(meta))
    assert load_tagger(path).pooling == "embedding"
    with pytest.raises(OmniSepError, match="pooling is one of"):
        Tagger(["a"], pooling="attention")


def test_the_shipped_tagger_reads_the_features_its_json_names():
    from omnisep.encoders.backbones import load_sfx_cnn
    from omnisep.tagger import POOLINGS

    tagger = load_tagger()
    assert tagger.feature_dim == POOLINGS[tagger.pooling]
    wave = (0.1 * np.random.default_rng(2).standard_normal(16000 * 4)).astype(np.float32)
    probabilities = torch.sigmoid(tagger.window_logits(block_features(load_sfx_cnn(), wave, 16000, tagger.pooling)[None]))
    assert probabilities.shape == (1, len(tagger.labels)) and torch.isfinite(probabilities).all()
