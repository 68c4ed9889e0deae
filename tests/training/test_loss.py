import math

import pytest
import torch

from omnisep.training.loss import batch_loss, separation_targets, thresholded_snr_loss, weighted_bce


def test_weighted_bce_by_hand():
    logits = torch.tensor([[[[0.0, 2.0]]]])
    ground_truth = torch.tensor([[[[1.0, 0.0]]]])
    weight = torch.tensor([[[[1.0, 3.0]]]])
    expected = (math.log(2) + 3 * math.log(1 + math.e**2)) / 2
    assert weighted_bce(logits, ground_truth, weight).item() == pytest.approx(expected, rel=1e-6)


def test_loss_is_the_mean_over_sources_of_per_source_means():
    torch.manual_seed(0)
    logits, ground_truth = torch.randn(3, 2, 4, 5), (torch.rand(3, 2, 4, 5) > 0.5).float()
    weight = torch.rand(3, 1, 4, 5)
    losses = weighted_bce(logits, ground_truth, weight)
    assert losses.shape == (3, 2)
    p = torch.sigmoid(logits)
    by_hand = -(weight * (ground_truth * p.log() + (1 - ground_truth) * (1 - p).log()))
    assert losses.mean().item() == pytest.approx(by_hand.mean().item(), rel=1e-5)


def test_targets_of_constant_signals():
    # A constant c gives |X| = c * sum(hann_1024) = 512 c in DC for frames inside
    # the signal; warped row 0 samples exactly linear bin 0.
    length = 8191
    sources = torch.stack([torch.full((length,), 0.4), torch.full((length,), 0.1)]).unsqueeze(0)
    mag_mix, ground_truth, weight = separation_targets(sources.sum(1), sources)
    assert mag_mix.shape == (1, 1, 256, 32) and ground_truth.shape == (1, 2, 256, 32)
    middle = 16
    assert mag_mix[0, 0, 0, middle].item() == pytest.approx(256.0, rel=1e-4)
    assert weight[0, 0, 0, middle].item() == pytest.approx(math.log1p(256.0), rel=1e-4)
    assert ground_truth[0, :, 0, middle].tolist() == [1.0, 0.0]  # 204.8 > 128 > 51.2


def test_ratio_targets_are_the_magnitude_share_clipped_at_one():
    # The same constants: 0.4 and 0.1 of a 0.5 mixture are 0.8 and 0.2 of its magnitude. Opposite signs
    # make the mixture quieter than one source (0.4 - 0.1 = 0.3): that source's ratio clips at 1.
    length = 8191
    sources = torch.stack([torch.full((length,), 0.4), torch.full((length,), 0.1)]).unsqueeze(0)
    _, ratio, _ = separation_targets(sources.sum(1), sources, "ratio")
    assert ratio[0, :, 0, 16].tolist() == pytest.approx([0.8, 0.2], rel=1e-4)
    cancelling = sources * torch.tensor([1.0, -1.0])[None, :, None]
    _, ratio, _ = separation_targets(cancelling.sum(1), cancelling, "ratio")
    assert ratio[0, :, 0, 16].tolist() == pytest.approx([1.0, 1 / 3], rel=1e-4)
    assert ratio.min() >= 0 and ratio.max() <= 1
    with pytest.raises(ValueError, match="binary"):
        separation_targets(sources.sum(1), sources, "irm")


def test_weight_is_clamped_to_paper_range():
    silent = torch.zeros(1, 2, 4095)
    _, ground_truth, weight = separation_targets(silent.sum(1), silent)
    assert torch.all(weight == 1e-3)  # log1p(1e-10) clamps up to 1e-3
    loud = torch.full((1, 2, 4095), 40.0)
    _, _, weight = separation_targets(loud.sum(1), loud)
    assert weight.max().item() == 10.0


def test_thresholded_snr_by_hand():
    # Source s = the mixture x: a perfect estimate scores -10 log10(1 + 1000) (saturated 30 dB above the
    # mixture); no estimate scores 0; for an absent source, returning the whole mixture costs +30 dB.
    torch.manual_seed(0)
    mixture = torch.randn(1, 4000)
    present = mixture[:, None]
    absent = torch.zeros(1, 1, 4000)
    saturated = -10 * math.log10(1 + 1000)
    assert thresholded_snr_loss(present, present, mixture).item() == pytest.approx(saturated, abs=1e-3)
    assert thresholded_snr_loss(absent, present, mixture).item() == pytest.approx(0.0, abs=1e-4)
    assert thresholded_snr_loss(absent, absent, mixture).item() == pytest.approx(0.0, abs=1e-4)
    assert thresholded_snr_loss(present, absent, mixture).item() == pytest.approx(10 * math.log10(1001), abs=1e-3)
    half = thresholded_snr_loss(0.5 * present, present, mixture).item()  # SNR of 6.02 dB
    assert half == pytest.approx(-10 * math.log10(1001 / (0.25 * 1000 + 1)), abs=1e-3)
    assert math.isfinite(thresholded_snr_loss(absent, absent, torch.zeros(1, 4000)).item())


def test_waveform_loss_applies_the_masks_as_inference_does():
    # Mixture = source 0; source 1 silent. Masks of one for source 0 and zero for source 1 reconstruct both
    # (the STFT/iSTFT pair is exact away from float error): losses near -30 dB and 0 dB. Gradients reach the logits.
    torch.manual_seed(1)
    mixture = torch.randn(2, 8191)
    sources = torch.stack([mixture, torch.zeros_like(mixture)], dim=1)
    mag_mix, losses_of = batch_loss(mixture, sources, "waveform")
    assert mag_mix.shape == (2, 1, 256, 32)
    logits = torch.zeros(2, 2, 256, 32)
    logits[:, 0], logits[:, 1] = 30.0, -30.0
    logits.requires_grad_(True)
    losses = losses_of(logits)
    assert losses.shape == (2, 2)
    assert losses[:, 0].tolist() == pytest.approx([-10 * math.log10(1001)] * 2, abs=0.05)
    assert losses[:, 1].tolist() == pytest.approx([0.0, 0.0], abs=1e-3)
    halfway = torch.zeros(2, 2, 256, 32, requires_grad=True)
    losses_of(halfway).sum().backward()
    assert halfway.grad.abs().sum() > 0


def test_negative_queries_add_the_loss_of_the_combined_logits_where_a_mixture_has_one():
    # loss.negative_weight: (1 + a) logits(q) - a logits(q_neg), scored as the plain query is, one forward pass.
    from omnisep.training.config import LossSection
    from omnisep.training.distributed import Runtime
    from omnisep.training.loop import _micro_batch_losses
    from omnisep.training.loss import batch_loss

    torch.manual_seed(0)
    mixture = torch.randn(3, 4095)
    sources = 0.5 * mixture.unsqueeze(1)
    queries, negatives = torch.randn(3, 1, 4), torch.randn(3, 1, 4)
    seen = []

    def model(mag_mix, rows):  # logits that depend on the query row and on the input
        seen.append(rows.shape)
        return rows.sum(-1)[..., None, None] * torch.log1p(mag_mix)

    batch = {"mixture": mixture, "sources": sources, "queries": queries, "negatives": negatives,
             "has_negative": torch.tensor([True, False, True]), "negative_alpha": torch.tensor([1.0, 2.0, 3.0])}
    runtime = Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    for target in ("binary", "waveform"):
        seen.clear()
        loss = LossSection(target=target, negative_weight=0.5)
        got = _micro_batch_losses(model, batch, runtime, "fp32", loss)
        assert seen == [(3, 2, 4)] and got.shape == (3, 1)
        mag_mix, losses_of = batch_loss(mixture, sources, target)
        plain = losses_of(model(mag_mix, queries))
        combined = [(1 + a) * model(mag_mix, queries)[b] - a * model(mag_mix, negatives)[b] for b, a in enumerate([1.0, 2.0, 3.0])]
        negative = losses_of(torch.stack(combined))
        expected = plain + 0.5 * negative * torch.tensor([[1.0], [0.0], [1.0]])
        torch.testing.assert_close(got, expected)
        assert not torch.allclose(negative, plain)
        # Weight 0 ignores the negatives: one query row, the plain loss.
        seen.clear()
        torch.testing.assert_close(_micro_batch_losses(model, batch, runtime, "fp32", LossSection(target=target)), plain)
        assert seen == [(3, 1, 4)]


def test_a_teacher_blends_its_soft_masks_into_the_target():
    # loss.teacher: target = (1 - w) truth + w sigmoid(teacher), on the plain queries; w = 0 is the plain loss.
    from omnisep.training.config import LossSection
    from omnisep.training.distributed import Runtime
    from omnisep.training.loop import _micro_batch_losses

    torch.manual_seed(1)
    mixture = torch.randn(2, 4095)
    sources = torch.stack([0.7 * mixture, 0.3 * mixture], dim=1)
    queries = torch.randn(2, 2, 4)

    def student(mag_mix, rows):
        return rows.sum(-1)[..., None, None] * torch.log1p(mag_mix)

    def teacher(mag_mix, rows):
        return -2.0 * rows.mean(-1)[..., None, None] * torch.ones_like(mag_mix)

    batch = {"mixture": mixture, "sources": sources, "queries": queries}
    runtime = Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    mag_mix, truth, weight = separation_targets(mixture, sources)
    logits = student(mag_mix, queries)
    soft = torch.sigmoid(teacher(mag_mix, queries))
    for share in (0.0, 0.25, 1.0):
        got = _micro_batch_losses(student, batch, runtime, "fp32", LossSection(teacher_weight=share), teacher)
        torch.testing.assert_close(got, weighted_bce(logits, (1 - share) * truth + share * soft, weight))
    # BCE is linear in its target: the blend equals blending the two losses
    torch.testing.assert_close(weighted_bce(logits, 0.75 * truth + 0.25 * soft, weight),
                               0.75 * weighted_bce(logits, truth, weight) + 0.25 * weighted_bce(logits, soft, weight))
    assert not torch.allclose(weighted_bce(logits, soft, weight), weighted_bce(logits, truth, weight))
