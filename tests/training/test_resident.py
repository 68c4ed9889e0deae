"""The resident pipeline draws the mixtures its [mixing] section describes, deterministically per step."""

import numpy as np
import torch

from omnisep.data.manifest import ManifestItem
from omnisep.training.resident import MixingSection, ResidentMixer

LABELS = ["a", "b", "c", "d"]
DIM = 8


def mixer(text_variants=None, text_variant_prob=0.0, negative_alpha=None, image_variants=None, image_variant_prob=0.0,
          **mixing) -> ResidentMixer:
    rng = np.random.default_rng(0)
    items, clips = [], []
    for n, label in enumerate(LABELS * 2):
        items.append(ManifestItem(id=f"{label}{n}", audio=f"{label}{n}.wav", label=label))
        clips.append((rng.standard_normal(3000 + 500 * n) * (n + 1)).astype(np.float32))
    embeddings = torch.randn(len(items), 3, DIM, generator=torch.Generator().manual_seed(1))
    available = torch.ones(len(items), 3, dtype=torch.bool)
    available[0, 1] = False
    section = MixingSection(**mixing)
    return ResidentMixer(items, clips, embeddings, available, section, 4000, 7, torch.device("cpu"), 32,
                         text_variants, text_variant_prob, negative_alpha, image_variants, image_variant_prob)


def rms(x):
    return x.pow(2).mean(-1).sqrt()


def test_same_step_same_batch_and_positions_are_slices():
    m = mixer()
    whole = m.batch(3, range(32))
    again = m.batch(3, range(32))
    part = m.batch(3, range(8, 16))
    for key in whole:
        torch.testing.assert_close(whole[key], again[key], rtol=0, atol=0)
        torch.testing.assert_close(whole[key][8:16], part[key], rtol=0, atol=0)
    assert not torch.equal(m.batch(4, range(32))["mixture"], whole["mixture"])
    assert whole["mixture"].shape == (32, 4000) and whole["sources"].shape == (32, 1, 4000)
    assert whole["queries"].shape == (32, 1, DIM)


def test_target_to_rest_ratio_levels_and_absent_targets():
    m = mixer(reverb_prob=0.0, noise_prob=0.0, absent_prob=0.3, source_weights=[0.0, 1.0])
    plan = m._plan(5)
    batch = m.batch(5, range(32))
    target, mixture = batch["sources"][:, 0], batch["mixture"]
    absent = plan["absent"]
    assert absent.any() and (~absent).any()
    assert (target[torch.from_numpy(absent)] == 0).all()
    present = ~absent
    ratio = 20 * torch.log10(rms(target[present]) / rms(mixture[present] - target[present]))
    np.testing.assert_allclose(ratio.numpy(), plan["ratio_db"][present], atol=0.05)
    peaks = mixture.abs().amax(-1)
    assert (peaks <= 0.99 + 1e-6).all()
    level = 20 * torch.log10(rms(mixture))
    unclipped = peaks < 0.989
    np.testing.assert_allclose(level[unclipped].numpy(), plan["level_db"][unclipped.numpy()], atol=0.05)


def test_a_single_source_is_the_whole_mixture():
    m = mixer(reverb_prob=0.0, noise_prob=0.0, absent_prob=0.0, source_weights=[1.0])
    batch = m.batch(0, range(32))
    torch.testing.assert_close(batch["sources"][:, 0], batch["mixture"])


def test_noise_and_reverb_go_to_the_rest_and_queries_compose_available_modalities():
    m = mixer(reverb_prob=1.0, noise_prob=1.0, absent_prob=0.0, source_weights=[1.0], noise_snr_db=[10.0, 10.0])
    batch = m.batch(1, range(32))
    target, mixture = batch["sources"][:, 0], batch["mixture"]
    snr = 20 * torch.log10(rms(target) / rms(mixture - target))
    np.testing.assert_allclose(snr.numpy(), 10.0, atol=0.05)
    # Query-Mixup: a convex combination of the query item's normalised embeddings.
    plan = m._plan(1)
    assert (plan["query_item"] == 0).any()  # the item without a picture is queried at least once
    for b, item in enumerate(plan["query_item"]):
        parts = m.parts[item][m.available[item]]  # [M', D] of the available modalities only
        weights = torch.linalg.lstsq(parts.T, batch["queries"][b, 0].unsqueeze(-1)).solution[:, 0]
        assert abs(weights.sum().item() - 1.0) < 1e-4 and (weights > -1e-4).all()
        residual = batch["queries"][b, 0] - weights @ parts
        assert residual.abs().max() < 1e-5


def test_text_variants_replace_the_label_text_of_their_class_only():
    variants = {"a": torch.randn(3, DIM, generator=torch.Generator().manual_seed(2)), "zz": torch.randn(2, DIM)}
    plain = mixer(absent_prob=0.0)
    worded = mixer(text_variants=variants, text_variant_prob=0.5, absent_prob=0.0)
    plan = worded._plan(2)
    # The same mixtures as without variants: the extra draws come after every other one.
    torch.testing.assert_close(worded.batch(2, range(32))["mixture"], plain.batch(2, range(32))["mixture"], rtol=0, atol=0)
    queries, reference = worded.batch(2, range(32))["queries"][:, 0], plain.batch(2, range(32))["queries"][:, 0]
    own = torch.nn.functional.normalize(variants["a"], dim=-1)
    changed = 0
    for b, item in enumerate(plan["query_item"]):
        if LABELS[item % 4] == "a" and plan["text_variant"][b] and worded.available[item, 0]:
            # Text row swapped for one of class a's wordings, with the same Query-Mixup weight.
            hits = [k for k in range(3) if torch.allclose(queries[b], _with_text(worded, b, item, own[k], plan), atol=1e-5)]
            assert len(hits) == 1, (b, hits)
            assert not torch.allclose(queries[b], reference[b])
            changed += 1
        else:
            torch.testing.assert_close(queries[b], reference[b], rtol=0, atol=0)
    assert changed > 0


def test_picture_variants_replace_the_picture_of_their_class_where_it_has_one():
    pictures = {"a": torch.randn(4, DIM, generator=torch.Generator().manual_seed(3))}
    plain = mixer(absent_prob=0.0)
    drawn = mixer(image_variants=pictures, image_variant_prob=0.6, absent_prob=0.0)
    batches = [(drawn.batch(step, range(32)), plain.batch(step, range(32)), drawn._plan(step)) for step in range(4)]
    own = torch.nn.functional.normalize(pictures["a"], dim=-1)
    changed = kept_without_picture = 0
    for batch, reference, plan in batches:
        torch.testing.assert_close(batch["mixture"], reference["mixture"], rtol=0, atol=0)  # drawn after everything else
        queries, expected = batch["queries"][:, 0], reference["queries"][:, 0]
        for b, item in enumerate(plan["query_item"]):
            if LABELS[item % 4] == "a" and plan["image_variant"][b] and drawn.available[item, 1]:
                hits = [k for k in range(4) if torch.allclose(queries[b], _with_text(drawn, b, item, own[k], plan, row=1), atol=1e-5)]
                assert len(hits) == 1, (b, hits)
                changed += 1
            else:
                kept_without_picture += int(item == 0 and bool(plan["image_variant"][b]))
                torch.testing.assert_close(queries[b], expected[b], rtol=0, atol=0)
    assert changed > 0 and kept_without_picture > 0  # item 0 has no picture: nothing to swap


def _with_text(m, b, item, text, plan, row=0):
    parts = m.parts[item].clone()
    parts[row] = text
    weights = torch.from_numpy(plan["mixup"][b]).float().clamp_min(1e-6) * m.available[item]
    return (weights / weights.sum()) @ parts


def test_negative_queries_name_another_sound_of_the_same_mixture():
    plain = mixer(absent_prob=0.3, source_weights=[0.3, 0.4, 0.3])
    with_negatives = mixer(absent_prob=0.3, source_weights=[0.3, 0.4, 0.3], negative_alpha=(1.0, 3.0))
    batch, reference, plan = with_negatives.batch(4, range(32)), plain.batch(4, range(32)), with_negatives._plan(4)
    # The same mixtures, targets and queries as a run without negatives.
    for key in reference:
        torch.testing.assert_close(batch[key], reference[key], rtol=0, atol=0)
    assert batch["negatives"].shape == (32, 1, DIM)
    alpha = batch["negative_alpha"]
    assert ((alpha >= 1.0) & (alpha <= 3.0)).all() and alpha.std() > 0.1
    counts, has = plan["used"].sum(1), batch["has_negative"].numpy()
    assert has.any() and (~has).any()
    np.testing.assert_array_equal(has, plan["absent"] | (counts >= 2))
    for b in np.flatnonzero(has):
        # The negative is a clip that sounds in this mixture, and not the queried one.
        item = plan["clips"][b, 0 if plan["absent"][b] else 1]
        assert plan["used"][b, 0 if plan["absent"][b] else 1]
        assert LABELS[item % 4] != LABELS[plan["query_item"][b] % 4]
        parts = with_negatives.parts[item][with_negatives.available[item]]
        weights = torch.linalg.lstsq(parts.T, batch["negatives"][b, 0].unsqueeze(-1)).solution[:, 0]
        assert abs(weights.sum().item() - 1.0) < 1e-4 and (weights > -1e-4).all()
        assert (batch["negatives"][b, 0] - weights @ parts).abs().max() < 1e-5


def test_random_eq_reshapes_each_source_within_its_range_and_keeps_the_level_plan():
    kwargs = dict(reverb_prob=0.0, noise_prob=0.0, absent_prob=0.0, source_weights=[1.0])
    flat = mixer(**kwargs).batch(2, range(32))
    shaped_mixer = mixer(eq_prob=0.5, eq_db=9.0, **kwargs)
    shaped, plan = shaped_mixer.batch(2, range(32)), shaped_mixer._plan(2)
    # Without the EQ the batches are those of a run that never had it.
    torch.testing.assert_close(mixer(eq_prob=0.0, eq_db=9.0, **kwargs).batch(2, range(32))["mixture"], flat["mixture"], rtol=0, atol=0)
    chosen = plan["eq"][:, 0]
    assert chosen.any() and (~chosen).any()
    kept = torch.from_numpy(~chosen)
    torch.testing.assert_close(shaped["mixture"][kept], flat["mixture"][kept])
    # A lone source is the whole mixture, at the planned level, whatever its EQ.
    torch.testing.assert_close(shaped["sources"][:, 0], shaped["mixture"])
    np.testing.assert_allclose(20 * torch.log10(rms(shaped["mixture"])).numpy(), 20 * torch.log10(rms(flat["mixture"])).numpy(), atol=0.05)
    # Where it was drawn, the spectrum changed: no bin by more than the range allows (twice, for the
    # level restored afterwards), and not by one overall factor.
    for b in np.flatnonzero(chosen)[:4]:
        before = torch.fft.rfft(flat["mixture"][b]).abs()
        after = torch.fft.rfft(shaped["mixture"][b]).abs()
        change_db = 20 * torch.log10(after[50:].clamp_min(1e-9) / before[50:].clamp_min(1e-9))
        assert change_db.abs().max() < 2 * 9.0 + 1e-3
        assert change_db.std() > 1.0


def test_the_reverb_fft_size_is_the_smallest_five_smooth_size_that_keeps_the_convolution_linear():
    from omnisep.training.resident import fast_fft_size

    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in [1, 2, 7, 97, 1000, 4097, 65535 + 8000]:
        size = fast_fft_size(n)
        assert size >= n and smooth(size)
        assert not any(smooth(m) for m in range(n, size))
    assert fast_fft_size(73535) == 73728
    # a linear convolution through an FFT of that size equals the direct one
    signal, response = torch.randn(2, 300, dtype=torch.double), torch.randn(2, 41, dtype=torch.double)
    size = fast_fft_size(300 + 41)
    fast = torch.fft.irfft(torch.fft.rfft(signal, size) * torch.fft.rfft(response, size), size)[..., :300]
    direct = torch.stack([torch.from_numpy(np.convolve(s.numpy(), r.numpy())[:300]) for s, r in zip(signal, response)])
    torch.testing.assert_close(fast, direct)
