"""The one signal path (models/signal_path.py): one piece of audio in, estimates out."""

import pytest
import torch

from omnisep.models import SeparateNet, SeparateNetConfig, signal_path

TINY = SeparateNetConfig(ngf=2, depth=2, k=3, emb_dim=4)


def tiny_model() -> SeparateNet:
    torch.manual_seed(0)
    return SeparateNet(TINY).eval()


def set_constant_mask_logit(model: SeparateNet, value: float) -> None:
    with torch.no_grad():
        model.scale.zero_()
        model.bias.fill_(value)


@pytest.mark.parametrize("logit,gain", [(50.0, 1.0), (0.0, 0.5), (-50.0, 0.0)])
def test_separate_with_constant_masks_scales_the_mixture(logit, gain):
    model = tiny_model()
    set_constant_mask_logit(model, logit)
    wave = torch.randn(2, 5000, generator=torch.Generator().manual_seed(3)) * 0.2  # 20 frames, padded to 24
    queries = torch.randn(2, 3, 4)
    out = signal_path.separate(model, wave, queries)
    assert out.shape == (2, 3, 5000)
    for q in range(3):
        torch.testing.assert_close(out[:, q], gain * wave, atol=1e-5, rtol=0)


def test_separate_stays_linear_and_honours_length():
    """No clipping: an all-pass mask returns a loud input as it is (writers warn when a format must clip)."""
    model = tiny_model()
    set_constant_mask_logit(model, 50.0)
    wave = torch.full((1, 4096), 0.5)
    wave[0, 1000:1100] = 1.7
    out = signal_path.separate(model, wave, torch.randn(1, 1, 4), length=4000)
    assert out.shape == (1, 1, 4000)
    torch.testing.assert_close(out[0, 0], wave[0, :4000], atol=1e-4, rtol=0)
    assert out.max().item() > 1.6


def test_training_targets_use_the_network_input():
    wave = torch.randn(2, 3, 4000, generator=torch.Generator().manual_seed(1))
    mag = signal_path.warped_magnitude(wave)
    assert mag.shape == (2, 3, 256, 16)
    torch.testing.assert_close(mag[1, 2:3], signal_path.network_input(signal_path.analyse(wave[1, 2:3]))[0])


