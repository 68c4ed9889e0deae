import math

import numpy as np
import pytest
import torch

from omnisep import spectral


def numpy_stft(x: np.ndarray) -> np.ndarray:
    """Independent reference: zero-padded centred frames, periodic Hann, rfft."""
    n = spectral.N_FFT
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    padded = np.pad(x, n // 2)
    n_frames = 1 + len(x) // spectral.HOP
    frames = np.stack([padded[i * spectral.HOP : i * spectral.HOP + n] for i in range(n_frames)], axis=1)
    return np.fft.rfft(frames * window[:, None], axis=0)


def test_constants_are_the_papers():
    assert (spectral.SAMPLE_RATE, spectral.N_FFT, spectral.HOP, spectral.WIN) == (16000, 1024, 256, 1024)
    assert (spectral.N_FREQ, spectral.N_WARP, spectral.SEGMENT) == (513, 256, 65535)


def test_stft_matches_numpy_reference_with_zero_padding():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000).astype(np.float64)
    ours = spectral.stft(torch.from_numpy(x)[None])[0].numpy()
    reference = numpy_stft(x)
    assert ours.shape == reference.shape == (513, 1 + 5000 // 256)
    np.testing.assert_allclose(ours, reference, atol=1e-9)
    # Reflection padding would differ in the first frame; zero padding must not.
    assert abs(ours[0, 0] - reference[0, 0]) < 1e-9


def test_one_segment_gives_256_frames_and_istft_inverts():
    x = torch.randn(2, spectral.SEGMENT, generator=torch.Generator().manual_seed(1)) * 0.3
    spec = spectral.stft(x)
    assert spec.shape == (2, 513, 256) and spec.is_complex()
    back = spectral.istft(spec, spectral.SEGMENT)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)
    # Without a length the output is the paper's 65,280-sample evaluation length.
    assert spectral.istft(spec).shape == (2, 65280)


def test_grid_endpoints_map_to_first_and_last_bin():
    warp_y = spectral.warp_coordinates()
    unwarp_y = spectral.unwarp_coordinates()
    assert warp_y.shape == (256,) and unwarp_y.shape == (513,)
    assert warp_y[0] == -1.0 and warp_y[-1] == 1.0
    assert unwarp_y[0] == -1.0 and unwarp_y[-1] == 1.0
    # The two maps are inverses of each other.
    t = torch.linspace(-1, 1, 256, dtype=torch.float64)
    back = torch.log(10 * warp_y + 11) / math.log(21) * 2 - 1
    torch.testing.assert_close(back, t)


def test_warp_of_a_ramp_matches_hand_values():
    # mag[bin] = bin, so the warped row i holds its source bin (21 ** (i/255) - 1) * 512 / 20.
    ramp = torch.arange(513, dtype=torch.float64).view(1, 1, 513, 1).expand(2, 3, 513, 5)
    warped = spectral.warp(ramp)
    assert warped.shape == (2, 3, 256, 5)
    for row in (0, 1, 100, 128, 255):
        expected = (21 ** (row / 255) - 1) * 25.6
        assert warped[1, 2, row, 3].item() == pytest.approx(expected, abs=1e-9)
    assert warped[0, 0, 0, 0].item() == 0.0
    assert warped[0, 0, 255, 0].item() == pytest.approx(512.0, abs=1e-9)


def test_unwarp_of_a_ramp_matches_hand_values():
    ramp = torch.arange(256, dtype=torch.float64).view(1, 1, 256, 1).expand(1, 2, 256, 4)
    linear = spectral.unwarp(ramp)
    assert linear.shape == (1, 2, 513, 4)
    for b in (0, 1, 256, 400, 512):
        t = -1 + 2 * b / 512
        assert linear[0, 1, b, 2].item() == pytest.approx(math.log(10 * t + 11) / math.log(21) * 255, abs=1e-9)


def test_warp_then_unwarp_keeps_smooth_spectra():
    bins = torch.arange(513, dtype=torch.float32)
    smooth = 0.5 + torch.exp(-(((bins - 150) / 120) ** 2))
    mag = torch.stack([smooth, smooth.flip(0)]).view(1, 2, 513, 1).expand(3, 2, 513, 7).contiguous()
    back = spectral.unwarp(spectral.warp(mag))
    torch.testing.assert_close(back, mag, atol=2e-3, rtol=0)


def test_time_axis_is_untouched_and_grids_are_cached():
    x = torch.rand(1, 1, 513, 9)
    warped = spectral.warp(x)
    for frame in range(9):
        torch.testing.assert_close(warped[..., frame], spectral.warp(x[..., frame : frame + 1])[..., 0])
    assert spectral._grid("warp", 9, x.device, x.dtype) is spectral._grid("warp", 9, x.device, x.dtype)


def test_shape_errors():
    with pytest.raises(ValueError):
        spectral.warp(torch.zeros(1, 1, 512, 4))
    with pytest.raises(ValueError):
        spectral.unwarp(torch.zeros(1, 256, 4))
    with pytest.raises(ValueError):
        spectral.stft(torch.zeros(100))


def test_constants_cached_during_inference_still_serve_training():
    wave = torch.randn(1, 4096)
    spectral._window.cache_clear()
    spectral._grid.cache_clear()
    with torch.inference_mode():
        spectral.warp(spectral.stft(wave).abs().unsqueeze(1))  # fills the window and grid caches
    trainable = wave.clone().requires_grad_(True)
    spec = spectral.stft(trainable)
    loss = spectral.istft(spec, 4096).sum() + spectral.warp(spec.abs().unsqueeze(1) + 1e-10).sum()
    loss.backward()
    assert trainable.grad is not None and torch.isfinite(trainable.grad).all()
