"""Automatic negative queries on a mixture whose interferer is known (the band model, conftest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnisep import negatives
from omnisep.apply import separate_tensor
from omnisep.errors import OmniSepError
from omnisep.negatives import AutoNegative, NegativeChoice, choose
from omnisep.queries import negative
from omnisep.scan import scan

SR = 16000


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((estimate - reference) ** 2)))


def test_the_interferer_is_chosen_and_helps_as_much_as_the_oracle(band_separator):
    bank = band_separator.bank
    low, high = band_separator.tones()
    mixture = low + high
    result = scan(band_separator, mixture, SR)
    query = bank.embeddings[0]  # "low"
    # "low" is the query's own label, "low-ish" (cosine 0.96) a near-synonym: neither may be subtracted.
    chosen = choose(result, query, bank, AutoNegative(count=1, max_similarity=0.8))
    assert [c.label for c in chosen] == ["high"]
    assert chosen[0].presence == pytest.approx(0.353, abs=0.005)
    assert chosen[0].similarity == pytest.approx(0.0, abs=1e-6)

    automatic = negatives.apply(query, bank, chosen, alpha=0.5)
    oracle = negative(query, bank.embeddings[1], alpha=0.5)
    torch.testing.assert_close(automatic, oracle)
    plain, auto = separate_tensor(band_separator.model, torch.from_numpy(mixture), torch.stack([query, automatic])).numpy()
    # Mask logits +-1.52 plain, +-1.93 with the negative: 11.9 dB -> 14.9 dB.
    assert sdr(low, plain) == pytest.approx(11.93, abs=0.1)
    assert sdr(low, auto) == pytest.approx(14.92, abs=0.1)


def test_without_the_similarity_cut_the_synonym_would_be_subtracted(band_separator):
    bank = band_separator.bank
    low, high = band_separator.tones()
    result = scan(band_separator, low + high, SR)
    chosen = choose(result, bank.embeddings[0], bank, AutoNegative(count=2, max_similarity=1.0))
    # Only the own label is left out; presences: high 0.353, low-ish 0.350, hum 0.25.
    assert [c.label for c in chosen] == ["high", "low-ish"]
    chosen = choose(result, bank.embeddings[0], bank, AutoNegative(count=3, max_similarity=0.8))
    assert [c.label for c in chosen] == ["high", "hum"]


def test_a_clean_recording_gets_no_negative_above_the_presence_floor(band_separator):
    bank = band_separator.bank
    low, _ = band_separator.tones()
    result = scan(band_separator, low, SR)
    # "high" leaks 0.18**2 of the energy; "hum" halves everything (0.25).
    assert result.presence[1] == pytest.approx(0.033, abs=0.005)
    assert choose(result, bank.embeddings[0], bank, AutoNegative(min_presence=0.3)) == []
    query = bank.embeddings[0]
    assert negatives.apply(query, bank, [], alpha=0.5) is query
    assert negatives.describe([]) == "(auto: nothing else found)"


def test_settings_are_checked():
    assert AutoNegative.coerce("auto") == AutoNegative()
    assert AutoNegative.coerce(3) == AutoNegative(count=3)
    assert AutoNegative.coerce(None) is None
    with pytest.raises(OmniSepError, match="at least 1 label"):
        AutoNegative(count=0)
    with pytest.raises(OmniSepError, match="not understood"):
        AutoNegative.coerce("speech")
    with pytest.raises(OmniSepError, match="cosine in"):
        AutoNegative(max_similarity=1.5)


def test_two_labels_are_averaged_as_in_eq_1(band_separator):
    bank = band_separator.bank
    choices = [NegativeChoice("high", 0.4, 0.0), NegativeChoice("hum", 0.3, 0.0)]
    expected = bank.embeddings[1] + bank.embeddings[3]
    torch.testing.assert_close(negatives.negative_vector(bank, choices), expected)
    assert negatives.describe(choices) == "- high - hum (auto)"


def test_the_residuals_embedding_names_the_nearest_other_label(band_separator):
    bank = band_separator.bank
    rows = torch.as_tensor(bank.embeddings, dtype=torch.float32)
    query = rows[0]  # "low"
    # What the query leaves sounds mostly like "low-ish" (a near-synonym of the query's own label), then "high".
    evidence = 0.9 * rows[2] + 0.5 * rows[1]
    closeness = negatives.similarities(evidence, bank)
    assert int(closeness.argmax()) in (0, 2)  # the nearest rows are the own label and its synonym
    chosen = negatives.choose_by_embedding(evidence, query, bank, AutoNegative(count=1, max_similarity=0.8))
    assert [c.label for c in chosen] == ["high"]
    assert chosen[0].presence == pytest.approx(float(closeness[1]), abs=1e-6)
    # With only the own label left out, the synonym is nearest and would be subtracted.
    chosen = negatives.choose_by_embedding(evidence, query, bank, AutoNegative(count=2, max_similarity=1.0))
    assert [c.label for c in chosen] == ["low-ish", "high"]


def test_the_residual_reorders_only_the_scans_first_labels(band_separator):
    bank = band_separator.bank
    low, high = band_separator.tones()
    result = scan(band_separator, low + high, SR)
    rows = torch.as_tensor(bank.embeddings, dtype=torch.float32)
    query, setting = rows[0], AutoNegative(count=1, max_similarity=1.0)
    # The scan's first other labels: high (0.353), low-ish (0.350), hum (0.25).
    assert [c.label for c in choose(result, query, bank, setting)] == ["high"]
    towards_synonym = negatives.choose_reranked(result, rows[2], query, bank, setting, candidates=2)
    assert [c.label for c in towards_synonym] == ["low-ish"]
    assert towards_synonym[0].presence == pytest.approx(0.350, abs=0.005)  # still the scan's presence
    # Evidence nearest "hum" (cosine 0.89), then "high" (0.45), cannot pull in "hum" from outside the
    # first two candidates; with three, it does.
    evidence = rows[1] + 2 * rows[3]
    assert [c.label for c in negatives.choose_reranked(result, evidence, query, bank, setting, candidates=2)] == ["high"]
    assert [c.label for c in negatives.choose_reranked(result, evidence, query, bank, setting, candidates=3)] == ["hum"]


def test_the_scan_and_the_residual_together_name_what_both_point_at(band_separator):
    """The scan ranks high (0.353) > low-ish (0.350) > hum (0.25); what the query leaves is nearest hum
    (cosine 0.725), then low-ish (0.688), never high. Each alone names its own first; their sum per
    label names low-ish, second in both."""
    from types import SimpleNamespace

    bank = band_separator.bank
    low, high = band_separator.tones()
    result = scan(band_separator, low + high, SR)
    rows = torch.as_tensor(bank.embeddings, dtype=torch.float32)
    query, setting = rows[0], AutoNegative(count=1, max_similarity=1.0)
    evidence = rows[2] / rows[2].norm() * 1.044 + 1.1 * rows[3]  # [1, 0, 0.3, 1.1]
    assert [c.label for c in choose(result, query, bank, setting)] == ["high"]
    assert [c.label for c in negatives.choose_by_embedding(evidence, query, bank, setting)] == ["hum"]
    both = negatives.choose_combined(result, evidence, query, bank, setting)
    assert [c.label for c in both] == ["low-ish"]
    closeness = negatives.similarities(evidence, bank)
    assert both[0].presence == pytest.approx(float(result.presence[2] + closeness[2]), abs=1e-6)
    # What sounds like the query's own label is never chosen, however strong: not the label itself, nor,
    # under the similarity cut, its near-synonym; with nothing audible left, the scan alone decides.
    assert [c.label for c in negatives.choose_combined(result, rows[0], query, bank, setting)] == ["low-ish"]
    cut = AutoNegative(count=1, max_similarity=0.8)
    assert [c.label for c in negatives.choose_combined(result, rows[0], query, bank, cut)] == ["high"]
    assert negatives.choose_combined(result, None, query, bank, setting) == choose(result, query, bank, setting)
    # A label neither heard by the scan nor resembled by the residual is never subtracted.
    quiet = SimpleNamespace(labels=bank.labels, presence=np.array([0.5, 1e-4, 0.0, 0.0], dtype=np.float32))
    assert negatives.choose_combined(quiet, rows[0], query, bank, cut) == []
    assert [c.label for c in negatives.choose_combined(quiet, rows[3], query, bank, cut)] == ["hum"]


class _ToneTagger:
    """A stand-in for a Verification with a tagger: hears "high" where the window's spectrum is mostly
    above 1 kHz, "low" where below, each with probability 0.9 (0.1 for the other labels)."""

    def __init__(self):
        self.windows = []

    def tag(self, clip):
        self.windows.append(len(clip))
        spectrum = np.abs(np.fft.rfft(clip)) ** 2
        frequencies = np.fft.rfftfreq(len(clip), 1 / SR)
        high = spectrum[frequencies > 1000].sum() > spectrum[frequencies <= 1000].sum()
        tags = np.full(4, 0.1, dtype=np.float32)
        tags[1 if high else 0] = 0.9
        return tags


def test_the_tagger_hears_the_other_sound_in_what_the_query_leaves(band_separator):
    bank = band_separator.bank
    low, high = band_separator.tones()
    rows = torch.as_tensor(bank.embeddings, dtype=torch.float32)
    tagger = _ToneTagger()
    # The query took most of "low": what is left is "high", which the tagger names.
    tags = negatives.ResidualTags.of(tagger, SR, low + high, 0.9 * low, window_seconds=1.0)
    assert tags == pytest.approx([0.1, 0.9, 0.1, 0.1])
    assert tagger.windows and max(tagger.windows) <= int(1.25 * SR)
    chosen = negatives.choose_by_tags(tags, rows[0], bank, AutoNegative(count=1, max_similarity=0.8))
    assert [c.label for c in chosen] == ["high"]
    assert chosen[0].presence == pytest.approx(0.9)
    # The query's own label is never chosen, even when the tagger hears it most.
    own = negatives.choose_by_tags(np.array([0.9, 0.2, 0.3, 0.1], np.float32), rows[0], bank,
                                   AutoNegative(count=1, max_similarity=0.8))
    assert [c.label for c in own] == ["high"]
    # Nothing audible left: no negative.
    assert negatives.ResidualTags.of(tagger, SR, low + high, low + high) is None
    assert negatives.choose_by_tags(None, rows[0], bank) == []


def test_residual_tags_weigh_each_window_by_its_energy():
    tagger = _ToneTagger()
    t = np.arange(SR) / SR
    loud_high = 0.5 * np.sin(2 * np.pi * 3000 * t)
    quiet_low = 0.1 * np.sin(2 * np.pi * 200 * t)
    residual = np.concatenate([loud_high, quiet_low]).astype(np.float32)
    tags = negatives.ResidualTags.of(tagger, SR, residual, np.zeros_like(residual), window_seconds=1.0)
    loud, quiet = 0.5**2 / 2, 0.1**2 / 2  # mean squares of the two windows
    expected_high = (0.9 * loud + 0.1 * quiet) / (loud + quiet)
    assert tags[1] == pytest.approx(expected_high, abs=2e-3)
    assert tags[0] == pytest.approx(1.0 - expected_high, abs=2e-3)
    assert tagger.windows == [SR, SR]
    # Streamed in blocks of any size, at another rate (the tagger hears 16 kHz), the same tags.
    sink = negatives.ResidualTags(_ToneTagger(), 2 * SR, window_seconds=1.0)
    from omnisep.audio import resample

    doubled = resample(residual, SR, 2 * SR)
    for start in range(0, doubled.size, 7001):
        sink.write(doubled[None, start : start + 7001])
    sink.target.write(np.zeros(10, np.float32))
    assert sink.tags() == pytest.approx(tags, abs=2e-3)
    assert sink.verification.windows == [SR, SR]


def test_the_scans_presence_times_the_residuals_tags_decides_between_them(band_separator):
    bank = band_separator.bank
    low, high = band_separator.tones()
    result = scan(band_separator, low + high, SR)  # presences: low, high 0.353, low-ish 0.350, hum 0.25
    rows = torch.as_tensor(bank.embeddings, dtype=torch.float32)
    setting = AutoNegative(count=1, max_similarity=1.0)
    tags = np.array([0.9, 0.3, 0.2, 0.5], np.float32)  # the tagger alone: hum
    assert [c.label for c in negatives.choose_by_tags(tags, rows[0], bank, setting)] == ["hum"]
    both = negatives.choose_by_tags(tags, rows[0], bank, setting, presence=result)
    assert [c.label for c in both] == ["hum"]  # 0.25 * 0.5 > 0.353 * 0.3
    tags[3] = 0.35
    both = negatives.choose_by_tags(tags, rows[0], bank, setting, presence=result)
    assert [c.label for c in both] == ["high"]  # 0.353 * 0.3 > 0.25 * 0.35, 0.350 * 0.2
    assert both[0].presence == pytest.approx(float(result.presence[1]) * 0.3, abs=1e-6)
