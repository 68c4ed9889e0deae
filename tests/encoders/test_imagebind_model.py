"""The clean-room ImageBind: checkpoint layout, forward passes, loading and conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from omnisep.encoders import get_encoder
from omnisep.encoders.imagebind import TINY, ImageBindEncoder, ImageBindModel, convert_imagebind, load_imagebind
from omnisep.encoders.imagebind.config import MODALITIES
from omnisep.encoders.imagebind.loader import expected_shapes
from omnisep.errors import OmniSepError

REPO = Path(__file__).resolve().parents[2]
FIXTURE_CANDIDATES = [
    REPO.parent / "shared" / "reference" / "imagebind_huge_state_dict.json",
    REPO / "shared" / "reference" / "imagebind_huge_state_dict.json",
]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return ImageBindModel(TINY, MODALITIES).eval()


def test_huge_architecture_has_exactly_the_official_keys_shapes_and_order():
    fixture = next((p for p in FIXTURE_CANDIDATES if p.is_file()), None)
    if fixture is None:
        pytest.skip("the reference listing shared/reference/imagebind_huge_state_dict.json is not beside the repository")
    reference = json.loads(fixture.read_text())["state_dict"]
    ours = expected_shapes()  # HUGE, all six modalities, built on the meta device
    assert list(ours) == list(reference)
    assert {k: tuple(v) for k, v in reference.items()} == ours
    assert sum(int(np.prod(s)) for s in ours.values()) == 1_200_786_990


def test_query_branches_are_a_subset_in_checkpoint_order():
    full, query = expected_shapes(), expected_shapes(modalities=("text", "audio", "vision"))
    assert list(query) == [k for k in full if k.split(".")[1] in ("vision", "text", "audio")]


def test_tiny_forward_on_every_modality(tiny_model):
    with torch.no_grad():
        vision = tiny_model.embed_vision(torch.randn(2, 3, 28, 28))
        text = tiny_model.embed_text(torch.tensor([[49406, 320, 1929, 49407] + [0] * 73] * 2))
        audio = tiny_model.embed_audio(torch.randn(2, 3, 1, 128, 204))
        depth = tiny_model.embed("depth", torch.randn(2, 1, 32, 32))
        thermal = tiny_model.embed("thermal", torch.randn(2, 1, 32, 32))
        imu = tiny_model.embed("imu", torch.randn(2, 6, 2000))
    for out in (vision, text, audio, depth, thermal, imu):
        assert out.shape == (2, 16) and torch.isfinite(out).all()
    assert torch.allclose(vision.norm(dim=-1), torch.ones(2), atol=1e-5)  # vision: normalised, no scale
    # text and audio carry their logit scales (1/0.07 and 20) after normalisation
    assert torch.allclose(text.norm(dim=-1), torch.full((2,), 1 / 0.07), rtol=1e-4)
    assert audio.norm(dim=-1).max() <= 20.0 + 1e-3


def test_audio_clips_are_embedded_separately_then_averaged(tiny_model):
    clips = torch.randn(1, 3, 1, 128, 204)
    with torch.no_grad():
        averaged = tiny_model.embed_audio(clips)
        each = torch.stack([tiny_model.embed("audio", clips[:, i]) for i in range(3)])
    assert torch.allclose(averaged, each.mean(0), atol=1e-5)


def test_text_pools_the_end_token_and_attends_causally(tiny_model):
    ids = torch.tensor([[49406, 320, 1929, 49407] + [0] * 73])
    changed_after_eot = ids.clone()
    changed_after_eot[0, 10] = 555
    changed_before_eot = ids.clone()
    changed_before_eot[0, 2] = 555
    with torch.no_grad():
        base = tiny_model.embed_text(ids)
        assert torch.allclose(base, tiny_model.embed_text(changed_after_eot), atol=1e-6)
        assert not torch.allclose(base, tiny_model.embed_text(changed_before_eot), atol=1e-3)


def test_loading_pth_and_safetensors_reproduces_the_model(tiny_model, tmp_path):
    state = tiny_model.state_dict()
    torch.save(state, tmp_path / "tiny.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "tiny.safetensors")
    pixels = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        expected = tiny_model.embed_vision(pixels)
        for name in ("tiny.pth", "tiny.safetensors"):
            loaded = load_imagebind(tmp_path / name, config=TINY)
            assert loaded.modalities == ("vision", "text", "audio")
            assert not any(p.requires_grad for p in loaded.parameters())
            assert torch.allclose(loaded.embed_vision(pixels), expected, atol=1e-6)
    converted = convert_imagebind(tmp_path / "tiny.pth", tmp_path / "converted.safetensors", config=TINY)
    with torch.no_grad():
        assert torch.allclose(load_imagebind(converted, config=TINY).embed_vision(pixels), expected, atol=1e-6)


def test_bad_weights_files_are_refused_with_one_sentence(tiny_model, tmp_path):
    with pytest.raises(OmniSepError, match="do not exist"):
        load_imagebind(tmp_path / "missing.pth", config=TINY)
    (tmp_path / "garbage.pth").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(OmniSepError, match="garbage.pth.*cannot be read"):
        load_imagebind(tmp_path / "garbage.pth", config=TINY)
    state = dict(tiny_model.state_dict())
    torch.save({**state, "classifier.weight": torch.zeros(2)}, tmp_path / "foreign.pth")
    with pytest.raises(OmniSepError, match="not an ImageBind huge checkpoint"):
        load_imagebind(tmp_path / "foreign.pth", config=TINY)
    partial = {k: v for k, v in state.items() if not k.startswith("modality_trunks.audio")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(OmniSepError, match="lack"):
        load_imagebind(tmp_path / "partial.pth", config=TINY)
    # vision/text/audio only is enough: depth/thermal/imu entries may be absent
    query_only = {k: v for k, v in state.items() if k.split(".")[1] in ("vision", "text", "audio")}
    torch.save(query_only, tmp_path / "query_only.pth")
    assert load_imagebind(tmp_path / "query_only.pth", config=TINY).modalities == ("vision", "text", "audio")
    torch.save({**query_only, "modality_heads.vision.2.weight": torch.zeros(3, 3)}, tmp_path / "bad_shape.pth")
    with pytest.raises(OmniSepError, match=r"'modality_heads.vision.2.weight' has shape \(3, 3\), expected \(16, 32\)"):
        load_imagebind(tmp_path / "bad_shape.pth", config=TINY)


def test_encoder_embeds_every_query_type(tiny_model, tmp_path):
    encoder = ImageBindEncoder(model=tiny_model)
    assert encoder.dim == 16 and encoder.version == "tiny"
    out = torch.cat(
        [
            encoder.embed_text(["dog barking"]),
            encoder.embed_image([np.zeros((40, 30, 3), np.uint8)]),
            encoder.embed_audio([np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1], 16000),
        ]
    )
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    identity = encoder.identity()
    assert identity["name"] == "imagebind" and len(identity["weights_hash"]) == 64
    assert identity == ImageBindEncoder(model=tiny_model).identity()


def test_missing_weights_explain_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNISEP_CACHE", str(tmp_path))
    with pytest.raises(OmniSepError, match="non-commercial.*--imagebind-weights"):
        get_encoder("imagebind")
