"""The picture bank embeds every picture copy of the sources it is allowed, through the heads the model reads."""

import numpy as np
import torch

import omnisep.querynet.image_head as image_head
import omnisep.querynet.pictures as pictures_module
from omnisep.query_aug import ClassMatcher
from omnisep.querynet.picture_bank import HELD_OUT, build_picture_bank
from omnisep.querynet.pictures import Picture


def test_bank_rows_are_the_image_heads_embeddings_of_every_copy(tmp_path, monkeypatch):
    asked = {}
    fake = [Picture("noto", "dog barking", "dog", np.zeros((4, 4, 4), np.uint8)),
            Picture("mdi", "rain", "rain", np.zeros((4, 4, 4), np.uint8))]

    def collect(labels, sources=None, cache=None, log=print):
        asked["sources"] = [s.name for s in sources]
        return fake

    features = torch.randn(2 * 3, 1280, generator=torch.Generator().manual_seed(0))

    def load(work, encoder, pictures, copies, seed, log=print):
        asked["copies"] = copies
        return features, [0, 0, 0, 1, 1, 1]

    monkeypatch.setattr(pictures_module, "collect_pictures", collect)
    monkeypatch.setattr(image_head, "load_or_compute_features", load)
    record = build_picture_bank(tmp_path / "bank.safetensors", tmp_path, copies=2, log=lambda *a: None)
    assert not set(HELD_OUT) & set(asked["sources"]) and "noto" in asked["sources"] and asked["copies"] == 2
    bank = ClassMatcher.load(tmp_path / "bank.safetensors")
    assert bank.labels == ["dog barking", "rain"] and bank.kinds == ["noto"] * 3 + ["mdi"] * 3
    assert record["entries"] == 6 and record["held_out"] == list(HELD_OUT)
    from omnisep.encoders.bundled import BundledEncoder

    with torch.no_grad():
        expected = torch.nn.functional.normalize(BundledEncoder(image_head.V1_HEADS).heads["image"](features), dim=-1)
    torch.testing.assert_close(bank.embeddings, expected, atol=2e-3, rtol=0)  # stored as fp16
