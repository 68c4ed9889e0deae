"""The picture recogniser: Lite2 + Lite0 features, heads averaged, one shared bridge (picture Query-Aug)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from omnisep.encoders import backbones
from omnisep.encoders.recogniser import DEFAULT_RECOGNISER, PictureRecogniser, from_head_states
from omnisep.query_aug import picture_recogniser
from omnisep.errors import OmniSepError
from omnisep.querynet.image_head import make_head


def _states(seeds, in_dim=2560, hidden=8, out_dim=16):
    generator = torch.Generator().manual_seed(0)
    return [{"image.layers.0.weight": torch.randn(hidden, in_dim, generator=generator) * 0.05,
             "image.layers.0.bias": torch.randn(hidden, generator=generator),
             "image.layers.2.weight": torch.randn(out_dim, hidden, generator=generator),
             "image.layers.2.bias": torch.randn(out_dim, generator=generator)} for _ in range(seeds)]


def _bridge(classes=5, out_dim=16):
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(classes, 1280, generator=generator).half().float() * 0.05
    return (weight, torch.randn(classes, generator=generator).half().float()), torch.randn(classes, out_dim, generator=generator).half().float()


def test_recogniser_is_the_mean_of_the_training_heads_with_the_bridge_on_the_lite2_half():
    """What the API recognises with equals what the leave-one-source-out protocol scored: each head as the image head
    v2 builds it (bridge weights zero over the Lite0 half), normalised, averaged."""
    states, (classifier, anchors) = _states(3), _bridge()
    features = torch.randn(4, 2560)
    recogniser = from_head_states(states, classifier, anchors, 0.4, 0.5)
    padded = (torch.cat([classifier[0], torch.zeros_like(classifier[0])], 1), classifier[1])
    heads = [make_head(state, 0.4, 0.5, padded, anchors) for state in states]
    with torch.no_grad():
        expected = F.normalize(sum(F.normalize(head(features), dim=-1) for head in heads), dim=-1)
        assert torch.allclose(recogniser(features), expected, atol=1e-4)
        # the Lite0 half does not reach the bridge: changing it moves only the MLP part
        only_bridge = from_head_states(states, classifier, anchors, 1.0, 0.5)
        moved = features.clone()
        moved[:, 1280:] += 1.0
        assert torch.allclose(only_bridge(features), only_bridge(moved), atol=1e-5)
        assert not torch.allclose(recogniser(features), recogniser(moved), atol=1e-3)


def test_recogniser_round_trips_and_a_damaged_file_is_named(tmp_path):
    states, (classifier, anchors) = _states(2), _bridge()
    recogniser = from_head_states(states, classifier, anchors, 0.55, 1.0)
    path = recogniser.save(tmp_path / "r.safetensors", {"note": "test"})
    loaded = PictureRecogniser.load(path)
    features = torch.randn(3, 2560)
    with torch.no_grad():
        assert torch.allclose(loaded(features), recogniser(features), atol=2e-3)  # stored in float16
    assert len(loaded.mlps) == 2 and loaded.bridge_weight == 0.55 and loaded.record == {"note": "test"}
    assert PictureRecogniser.is_recogniser(path)
    path.write_bytes(b"not safetensors")
    with pytest.raises(OmniSepError, match="r.safetensors"):
        PictureRecogniser.load(path)


def test_the_calibration_decides_what_recognises_pictures(tmp_path):
    """A calibration fitted on the recogniser gets the recogniser; an earlier one (heads v2) keeps the image head v2."""
    from omnisep.encoders.bundled import BundledEncoder

    encoder = BundledEncoder()
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": "omnisep-query-aug-pictures", "heads_version": 2}))
    assert isinstance(picture_recogniser(encoder, old), BundledEncoder)
    assert picture_recogniser(encoder, old).heads_version == 2
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"format": "omnisep-query-aug-pictures", "heads_version": 2, "recogniser": True}))
    states, (classifier, anchors) = _states(2), _bridge()
    path = from_head_states(states, classifier, anchors, 0.4, 0.5).save(tmp_path / "r.safetensors")
    chosen = picture_recogniser(encoder, new, path)
    assert isinstance(chosen, PictureRecogniser) and chosen.encoder is encoder  # shares Lite0 and its feature memo
    if DEFAULT_RECOGNISER.is_file():
        assert isinstance(picture_recogniser(encoder, new), PictureRecogniser)


def test_efficientnet_lite2_loads_strictly_and_sees_the_photo():
    """Lite2 (the Lite rules: stem and head not scaled, first and last stage not repeated) takes every tensor of its
    wheel; with its classifier the Grace Hopper photo's first five ImageNet classes include 'military uniform'
    (652), as Lite0's first class is."""
    import matplotlib
    from PIL import Image

    state, (weight, bias) = backbones.lite_state_and_classifier("lite2")
    model = backbones.build_efficientnet_lite("lite2")
    model.load_state_dict(state, strict=True)
    model.eval()
    photo = np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB"))
    with torch.no_grad():
        logits = backbones.image_features(model, backbones.image_to_pixels(photo, 260)[None]) @ weight.T + bias
    assert 652 in logits.topk(5).indices[0].tolist()


@pytest.mark.skipif(not DEFAULT_RECOGNISER.is_file(), reason="no shipped recogniser")
def test_shipped_recogniser_names_the_example_pictures():
    from omnisep.encoders import get_encoder
    from omnisep.query_aug import ClassMatcher

    examples = Path(__file__).resolve().parents[2] / "examples" / "queries"
    recogniser = picture_recogniser(get_encoder("bundled"))
    assert isinstance(recogniser, PictureRecogniser) and len(recogniser.mlps) >= 2
    names = ["dog-barking", "playing-piano", "playing-violin", "owl-hooting", "cat-meowing"]
    matches = ClassMatcher.for_pictures().match(recogniser.embed_image([examples / f"{n}.png" for n in names]))
    assert [m.label for m in matches] == [n.replace("-", " ") for n in names]


def test_encoders_convert_writes_lite2_and_a_damaged_copy_is_named(tmp_path):
    from omnisep.cli import main

    assert main(["encoders", "convert", "-o", str(tmp_path)]) == 0
    converted = tmp_path / backbones.LITE2_FILE
    state, _ = backbones.lite_state_and_classifier("lite2")
    loaded = backbones.load_efficientnet_lite2(tmp_path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    converted.write_bytes(b"\x00" * 64)
    with pytest.raises(OmniSepError, match="efficientnet-lite2.safetensors"):
        backbones.load_efficientnet_lite2(tmp_path)
