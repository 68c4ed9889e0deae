"""The image head v2's zero-shot bridge."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnisep.encoders.heads import HeadConfig, ProjectionHead, heads_from_state, load_heads, save_heads


def test_bridge_mixes_mlp_and_classifier_text_anchors(tmp_path):
    torch.manual_seed(0)
    config = HeadConfig(8, 4, 6, bridge=5, bridge_temperature=0.5, bridge_weight=0.3)
    head = ProjectionHead(config).eval()
    head.bridge_weight.copy_(torch.randn(5, 8).half())
    head.bridge_bias.copy_(torch.randn(5).half())
    head.bridge_anchors.copy_(torch.randn(5, 4).half())
    x = torch.randn(3, 8)
    probabilities = torch.softmax((x @ head.bridge_weight.float().T + head.bridge_bias.float()) / 0.5, dim=-1)
    expected = 0.7 * F.normalize(head.layers(x), dim=-1) + 0.3 * F.normalize(probabilities @ head.bridge_anchors.float(), dim=-1)
    assert torch.allclose(head(x), expected, atol=1e-6)
    import torch.nn as nn

    path = save_heads(tmp_path / "h.safetensors", nn.ModuleDict({"image": head}))
    loaded, info = load_heads(path)
    assert info["heads"]["image"]["bridge"] == 5 and loaded["image"].bridge_weight.dtype == torch.float16
    assert torch.allclose(loaded["image"](x), head(x))


def test_plain_heads_are_unchanged():
    head = ProjectionHead(HeadConfig(8, 4, 0)).eval()
    x = torch.randn(2, 8)
    assert torch.equal(head(x), head.layers(x))
    assert set(head.state_dict()) == {"layers.0.weight", "layers.0.bias"}
    rebuilt = heads_from_state({f"image.{k}": v for k, v in head.state_dict().items()})
    assert torch.equal(rebuilt["image"](x), head(x))
