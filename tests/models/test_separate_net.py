import pytest
import torch

from omnisep import spectral
from omnisep.errors import OmniSepError
from omnisep.models import SeparateNet, SeparateNetConfig

TINY = SeparateNetConfig(ngf=2, depth=2, k=3, emb_dim=4)


def tiny_model(**changes) -> SeparateNet:
    torch.manual_seed(0)
    return SeparateNet(SeparateNetConfig(**{**TINY.to_dict(), **changes})).eval()


def test_config_round_trip_and_unknown_keys():
    config = SeparateNetConfig(ngf=8, depth=3, k=4, emb_dim=16, binary_mask=True)
    assert config.to_dict() == {"ngf": 8, "depth": 3, "k": 4, "emb_dim": 16, "binary_mask": True, "align_corners": True}
    assert SeparateNetConfig.from_dict(config.to_dict()) == config
    assert SeparateNetConfig() == SeparateNetConfig(ngf=64, depth=7, k=32, emb_dim=1024, binary_mask=False)
    with pytest.raises(OmniSepError, match="unknown key.*'kk'"):
        SeparateNetConfig.from_dict({"kk": 3})
    with pytest.raises(OmniSepError, match="'k' must be a positive integer"):
        SeparateNetConfig(k=0)
    with pytest.raises(OmniSepError, match="depth"):
        SeparateNetConfig(depth=9)


def test_mask_logits_follow_equation_2_by_hand():
    model = tiny_model()
    with torch.no_grad():
        model.query_proj.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 0]]))
        model.query_proj.bias.copy_(torch.tensor([0.0, 0.0, 2.0]))
        model.scale.copy_(torch.tensor([1.0, 2.0, -1.0]))
        model.bias.fill_(0.5)
    features = torch.arange(3 * 2 * 2, dtype=torch.float32).view(1, 3, 2, 2)  # F_c = 4c + pixel
    query = torch.tensor([[[0.0, 0.0, 5.0, 5.0]]])  # W q = [0, 0, 2]
    logits = model.mask_logits(features, query)
    s0, s2 = 0.5, torch.sigmoid(torch.tensor(2.0)).item()
    for pixel in range(4):
        f = [pixel, 4 + pixel, 8 + pixel]
        expected = s0 * 1 * f[0] + s0 * 2 * f[1] + s2 * (-1) * f[2] + 0.5
        assert logits[0, 0].flatten()[pixel].item() == pytest.approx(expected, rel=1e-6)


def test_many_queries_equal_separate_calls_with_one_unet_pass():
    model = tiny_model()
    mag = spectral.warp(torch.rand(2, 1, 513, 8) + spectral.MAG_EPS)
    queries = torch.randn(2, 5, 4)
    calls = []
    model.unet.register_forward_hook(lambda *args: calls.append(1))
    together = model(mag, queries)
    assert len(calls) == 1 and together.shape == (2, 5, 256, 8)
    for q in range(5):
        torch.testing.assert_close(together[:, q : q + 1], model(mag, queries[:, q : q + 1]))


def test_features_ignore_the_query():
    model = tiny_model(k=6)
    mag = spectral.warp(torch.rand(1, 1, 513, 4) + spectral.MAG_EPS)
    features = model.features(mag)
    assert features.shape == (1, 6, 256, 4)
    for seed in range(2):
        q = torch.randn(1, 1, 4, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(model(mag, q), model.mask_logits(features, q))


def test_features_are_log_then_batchnorm_then_unet():
    model = tiny_model()
    mag = torch.rand(1, 1, 256, 4) + 0.1
    expected = model.unet(model.input_norm(torch.log(mag)))
    torch.testing.assert_close(model.features(mag), expected)


def test_masks_soft_and_binary():
    logits = torch.tensor([-2.0, 0.0, 0.5])
    torch.testing.assert_close(tiny_model().masks(logits), torch.sigmoid(logits))
    torch.testing.assert_close(tiny_model(binary_mask=True).masks(logits), torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(tiny_model().masks(logits, binary=True), torch.tensor([0.0, 0.0, 1.0]))


def test_query_dimension_mismatch_is_a_user_error():
    model = tiny_model()
    with pytest.raises(OmniSepError, match="4"):
        model(torch.rand(1, 1, 256, 4), torch.randn(1, 1, 7))


def test_paper_initialisation_of_query_side():
    model = SeparateNet(SeparateNetConfig(ngf=2, depth=2, k=32, emb_dim=1024))
    assert abs(model.query_proj.weight.std().item() - 1e-4) < 1e-5
    assert (model.scale == 1).all() and (model.bias == 0).all()
