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




def _energy_db(out, wave) -> float:
    import math

    return 10 * math.log10(float(out.detach().double().square().sum()) / float(wave.double().square().sum()))


def test_the_second_look_asks_again_only_where_the_query_found_little(band_separator):
    """The band model's masks do not depend on the input: "high" keeps 0.18 of the low band, so on a low tone
    it returns -14.8 dB; looked at again, its mask is squared (-29.6 dB). "low" returns -1.7 dB, above the
    gate, and is left exactly as it was; a gate under -14.8 dB changes nothing."""
    from omnisep.apply import separate_tensor
    from omnisep.queries import QueryRows

    low, _ = band_separator.tones(seconds=2.0)
    wave = torch.from_numpy(low)[None]
    net, rows = band_separator.model, torch.as_tensor(band_separator.bank.embeddings[:2], dtype=torch.float32)
    once = signal_path.separate(net, wave, rows[None])[0]
    spec = signal_path.analyse(wave)
    again = signal_path.separate_spectrogram(net, spec, rows[None], wave.shape[-1], second_look=-10.0)[0]
    assert _energy_db(once[1], wave) == pytest.approx(-14.8, abs=0.3)
    assert _energy_db(again[1], wave) == pytest.approx(-29.6, abs=0.6)
    torch.testing.assert_close(again[0], once[0])
    masks = torch.sigmoid(net.mask_logits(net.prepare(signal_path.pad_frames(signal_path.network_input(spec), net.time_multiple)),
                                          rows[None, 1:2])[..., : spec.shape[-1]])
    squared = signal_path.synthesise(signal_path.apply_masks(spec, masks * masks), wave.shape[-1])[0, 0]
    torch.testing.assert_close(again[1], squared, atol=1e-5, rtol=1e-4)
    quiet_gate = signal_path.separate_spectrogram(net, spec, rows[None], wave.shape[-1], second_look=-20.0)[0]
    torch.testing.assert_close(quiet_gate, once)
    # The whole-file engine carries the gate with the query rows (and keeps it across devices).
    gated = QueryRows(rows, second_look=-10.0)
    assert gated.to("cpu").second_look == -10.0 and gated.looking_again(None).second_look is None
    torch.testing.assert_close(separate_tensor(net, wave[0], gated), again, atol=1e-5, rtol=1e-4)


def test_the_second_look_combines_the_rows_as_the_first(band_separator):
    """An output made of several rows (a contrast or a logit-mode negative) is asked again with the same
    combination: for the band model, its combined mask squared."""
    from omnisep.queries import QueryRows

    low, _ = band_separator.tones(seconds=2.0)
    wave = torch.from_numpy(low)[None]
    net, bank = band_separator.model, torch.as_tensor(band_separator.bank.embeddings, dtype=torch.float32)
    asked = QueryRows.from_terms([[(bank[0], 1.0)], [(bank[1], 1.5), (bank[3], -0.5)]], second_look=-10.0)
    assert asked.combine is not None
    spec = signal_path.analyse(wave)
    out = signal_path.separate_spectrogram(net, spec, asked.rows[None], wave.shape[-1], combine=asked.combine,
                                           second_look=asked.second_look)[0]
    prepared = net.prepare(signal_path.pad_frames(signal_path.network_input(spec), net.time_multiple))
    combined = torch.einsum("qr,brft->bqft", asked.combine, net.mask_logits(prepared, asked.rows[None]))[..., : spec.shape[-1]]
    mask = torch.sigmoid(combined[:, 1:2])
    expected = signal_path.synthesise(signal_path.apply_masks(spec, mask * mask), wave.shape[-1])[0, 0]
    torch.testing.assert_close(out[1], expected, atol=1e-5, rtol=1e-4)
    first = signal_path.synthesise(signal_path.apply_masks(spec, torch.sigmoid(combined[:, :1])), wave.shape[-1])[0, 0]
    torch.testing.assert_close(out[0], first, atol=1e-5, rtol=1e-4)  # "low" found its sound: left alone
