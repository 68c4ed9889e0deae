import pytest
import torch
from torch import nn

from omnisep.models.unet import UNet, level_channels


def conv_params(c_in, c_out, k, bias=False):
    return c_in * c_out * k * k + (c_out if bias else 0)


def test_paper_size_has_30_3_million_parameters():
    model = UNet(ngf=64, depth=7, out_channels=32)
    # Hand count. Down: k4 convs 1-64-128-256-512-512-512-512, no bias;
    # BN after the five middle down convs.
    down = sum(conv_params(a, b, 4) for a, b in [(1, 64), (64, 128), (128, 256), (256, 512), (512, 512), (512, 512), (512, 512)])
    down_bn = 2 * (128 + 256 + 512 + 512 + 512)
    # Up: k3 convs; the innermost takes 512, the others twice their inner width
    # (skip concatenation); the last one maps 128 -> 32 with bias.
    up = (
        conv_params(512, 512, 3)
        + 2 * conv_params(1024, 512, 3)
        + conv_params(1024, 256, 3)
        + conv_params(512, 128, 3)
        + conv_params(256, 64, 3)
        + conv_params(128, 32, 3, bias=True)
    )
    up_bn = 2 * (512 + 512 + 512 + 256 + 128 + 64)
    expected = down + down_bn + up + up_bn
    assert expected == 30_274_208
    assert sum(p.numel() for p in model.parameters()) == expected
    assert round(expected / 1e6, 1) == 30.3


def test_paper_size_maps_256_square_to_k_channels():
    torch.manual_seed(0)
    model = UNet(ngf=64, depth=7, out_channels=32).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 256, 256))
    assert out.shape == (1, 32, 256, 256)
    assert torch.isfinite(out).all()


def test_level_channels_double_up_to_eight_ngf():
    assert level_channels(64, 7) == [64, 128, 256, 512, 512, 512, 512]
    assert level_channels(4, 3) == [4, 8, 16]


@pytest.mark.parametrize("ngf,depth,k,height,width", [(4, 3, 5, 16, 24), (2, 5, 3, 32, 64), (8, 2, 1, 4, 12)])
def test_small_configs_keep_spatial_size(ngf, depth, k, height, width):
    out = UNet(ngf=ngf, depth=depth, out_channels=k)(torch.randn(2, 1, height, width))
    assert out.shape == (2, k, height, width)


def test_rejects_sizes_not_divisible_by_two_to_the_depth():
    model = UNet(ngf=2, depth=3, out_channels=2)
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.randn(1, 1, 16, 12))


def test_block_layout_and_initialisation():
    torch.manual_seed(0)
    model = UNet(ngf=16, depth=4, out_channels=8)
    outer = model.body
    assert isinstance(outer.activation, nn.Identity)  # outermost: no activation before the first conv
    assert not any(isinstance(m, nn.BatchNorm2d) for m in outer.down)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in outer.up)
    innermost = outer.child.child.child
    assert innermost.child is None
    assert isinstance(innermost.activation, nn.LeakyReLU) and innermost.activation.negative_slope == 0.2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in innermost.down)  # innermost: no norm
    assert isinstance(innermost.up[-1], nn.BatchNorm2d)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.bias is not None for c in convs].count(True) == 1  # only the last conv has a bias
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.std().item() - 1e-3) < 1e-4
    bn_weights = torch.cat([m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn_weights.mean().item() - 1.0) < 0.01
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_skip_carries_the_activated_input():
    # With every conv weight zero, a level returns [leaky_relu(x), up(0)] — the paper's
    # in-place activation means the skip holds the activated tensor.
    model = UNet(ngf=1, depth=2, out_channels=1)
    level = model.body.child
    for p in level.parameters():
        nn.init.zeros_(p)
    level.eval()
    x = torch.tensor([[-1.0, 2.0], [3.0, -4.0]]).view(1, 1, 2, 2).repeat(1, 1, 2, 2)
    out = level(x)
    torch.testing.assert_close(out[:, :1], torch.nn.functional.leaky_relu(x, 0.2))
