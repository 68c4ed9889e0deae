"""Heads versions: v2 retrains only the image head; checkpoints and caches of v1 keep working."""

from __future__ import annotations

import json

import pytest
import torch

from omnisep.encoders.base import identities_compatible
from omnisep.encoders.bundled import BundledEncoder
from omnisep.encoders.heads import HeadConfig, ProjectionHead, build_heads, heads_sha256, load_heads, save_heads
from omnisep.errors import OmniSepError
from omnisep.querynet.image_head import V1_HEADS, write_v2_heads
from omnisep.states import check_encoder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _identity(**extra):
    return {"name": "bundled", "version": "1", "weights_hash": "a" * 64, "dim": 384, **extra}


def test_compatibility_rule():
    old = _identity()
    new = _identity(weights_hash="b" * 64, heads_version=2, compatible_hashes=["a" * 64])
    assert identities_compatible(old, new)  # a v1 checkpoint, v2 heads
    assert identities_compatible(new, old)  # a v2 checkpoint (it records the v1 hash), v1 heads
    assert not identities_compatible(old, _identity(weights_hash="c" * 64))
    assert not identities_compatible(old, {**new, "dim": 1024})
    assert not identities_compatible(old, {**new, "name": "imagebind"})


def test_check_encoder_accepts_a_compatible_heads_version_only():
    config = {"encoder": _identity()}
    check_encoder(config, _identity(weights_hash="b" * 64, compatible_hashes=["a" * 64]))
    with pytest.raises(OmniSepError, match="does not match"):
        check_encoder(config, _identity(weights_hash="b" * 64, compatible_hashes=["d" * 64]))


def _v1(tmp_path):
    heads = build_heads({"image": HeadConfig(1280, 384, 16), "audio": HeadConfig(512, 384, 16)}, seed=3)
    path = save_heads(tmp_path / "v1.safetensors", heads)
    return path, heads


def _new_image_head(seed=5):
    torch.manual_seed(seed)
    head = ProjectionHead(HeadConfig(1280, 384, 16, bridge=10, bridge_temperature=1.0, bridge_weight=0.5))
    for tensor in head.state_dict().values():
        tensor.copy_(torch.randn_like(tensor.float()).to(tensor.dtype))
    return head.eval()


def test_v2_heads_keep_the_audio_head_and_name_v1(tmp_path):
    v1_path, v1 = _v1(tmp_path)
    v1_heads, v1_info = load_heads(v1_path)
    v2_path = write_v2_heads(tmp_path / "v2.safetensors", _new_image_head(), v1_heads, v1_info, {"note": "test"})
    v2_heads, v2_info = load_heads(v2_path)
    assert v2_info["heads_version"] == 2 and v2_info["supersedes"][0]["heads_version"] == 1
    assert heads_sha256(v2_heads, ["audio"]) == heads_sha256(v1, ["audio"])
    assert heads_sha256(v2_heads, ["image"]) != heads_sha256(v1, ["image"])
    features = torch.randn(3, 512)
    assert torch.equal(v2_heads["audio"](features), v1["audio"](features))

    first = BundledEncoder(v1_path)
    second = first.with_heads(v2_path)
    old, new = first.identity(), second.identity()
    assert old["heads_version"] == 1 and new["heads_version"] == 2
    assert old["weights_hash"] != new["weights_hash"]
    assert new["compatible_hashes"] == [old["weights_hash"]]  # rebuilt, not copied from a file
    check_encoder({"encoder": old}, new)
    check_encoder({"encoder": new}, old)


def test_a_changed_audio_head_breaks_the_lineage(tmp_path):
    v1_path, _ = _v1(tmp_path)
    v1_heads, v1_info = load_heads(v1_path)
    path = write_v2_heads(tmp_path / "v2.safetensors", _new_image_head(), v1_heads, v1_info, {})
    heads, info = load_heads(path)
    with torch.no_grad():
        heads["audio"].layers[0].bias.add_(1e-3)
    save_heads(tmp_path / "forged.safetensors", heads, heads_version=2, supersedes=info["supersedes"])
    old = BundledEncoder(v1_path).identity()
    forged = BundledEncoder(tmp_path / "forged.safetensors").identity()
    assert "compatible_hashes" not in forged
    with pytest.raises(OmniSepError):
        check_encoder({"encoder": old}, forged)


def test_shipped_heads_v2_stand_in_for_the_default_checkpoints_v1():
    """The default heads are v1, exactly those the shipped checkpoint records; the opt-in v2 heads load it too."""
    from omnisep.encoders import get_encoder
    from omnisep.encoders.bundled import DEFAULT_HEADS
    from omnisep.pretrained import resolve_model

    assert DEFAULT_HEADS == V1_HEADS and json.loads(DEFAULT_HEADS.with_suffix(".json").read_text()).get("heads_version", 1) == 1
    recorded = json.loads((resolve_model("default") / "config.json").read_text())["encoder"]
    v1 = BundledEncoder()
    assert v1.identity()["weights_hash"] == recorded["weights_hash"] and "compatible_hashes" not in v1.identity()
    current = get_encoder("bundled", heads="v2")
    assert current.options == {"heads": "v2"}
    identity = current.identity()
    assert identity["heads_version"] == 2 and recorded["weights_hash"] in identity["compatible_hashes"]
    check_encoder({"encoder": recorded}, identity)
