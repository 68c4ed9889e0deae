"""The scoring and selection rules of the auto-negative and presence evaluations, on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from omnisep.evaluation import auto_negative, presence


def test_presence_scores_count_pairs_and_frames():
    data = {
        # 2 mixtures x 3 labels; truth: labels 0+1, then 1+2.
        "presence": np.array([[0.9, 0.5, 0.2], [0.1, 0.8, 0.6]]),
        "truth_clip": np.array([[True, True, False], [False, True, True]]),
        "ratios": np.array([[[0.9, 0.1], [0.5, 0.5], [0.2, 0.0]], [[0.1, 0.1], [0.8, 0.7], [0.6, 0.0]]]),
        "truth_frame": np.array([[[True, False], [True, True], [False, False]], [[False, False], [True, True], [True, False]]]),
        "audible": np.array([[True, True], [True, False]]),
    }
    at = presence.score(data, 0.55)
    # Predicted: {0} and {1, 2}: 3 true positives, no false positive, one miss (label 1 of mixture 0).
    assert at["clip"] == {"precision": 1.0, "recall": 0.75, "f1": pytest.approx(6 / 7), "tp": 3, "fp": 0, "fn": 1}
    assert at["truth_is_top"] == 1.0
    assert at["labels_found_per_mixture"] == 1.5
    # Frames: 6 audible (label, frame) cells per mixture-frame, 3 audible mixture-frames = 9 cells.
    frame = at["frame"]
    assert frame["tp"] + frame["fp"] + frame["fn"] <= 9 and frame["tp"] == 3 and frame["fp"] == 0 and frame["fn"] == 2
    assert presence.best_threshold(data, thresholds=(0.15, 0.45, 0.55, 0.85)) == 0.45  # all 4 found, 0 false


def test_choose_defaults_prefers_settings_that_hurt_no_mode():
    def rows(auto_a, auto_b):
        return {"plain": {"sdri": 5.0, "gain": 0.0}, "auto/mixture/n1/sim1.01/a0.5": {"sdri": 5.0 + auto_a, "gain": auto_a},
                "auto/mixture/n2/sim1.01/a0.5": {"sdri": 5.0 + auto_b, "gain": auto_b}}

    summary = {"text": rows(0.2, 0.9), "image": rows(0.1, -0.1)}
    # n2 has the best mean but hurts the image query on average: n1 is chosen.
    assert auto_negative.choose_defaults(summary, alpha=0.5) == "auto/mixture/n1/sim1.01/a0.5"
    # When every setting hurts somewhere, the best mean is still chosen (n1: 4.95 dB over 4.90), and flagged.
    summary = {"text": rows(-0.2, -0.1), "image": rows(0.1, -0.1)}
    assert auto_negative.choose_defaults(summary) == "auto/mixture/n1/sim1.01/a0.5"
    assert not auto_negative.meets_target(summary, "auto/mixture/n1/sim1.01/a0.5")


def test_summaries_are_paired_with_the_plain_query():
    data = {"scores": {"text": {"plain": [1.0, 2.0, None, 4.0], "oracle/a0.5": [2.0, 2.5, 3.0, None]}}}
    summary = auto_negative.summarize_run(data)["text"]
    assert summary["oracle/a0.5"]["n"] == 2  # mixtures 0 and 1: where both were scored
    assert summary["oracle/a0.5"]["gain"] == pytest.approx(0.75)
    assert summary["oracle/a0.5"]["sdri"] == pytest.approx(2.25)
    assert summary["plain"]["gain"] == 0.0


def test_one_pass_equals_the_models_own_separation():
    import torch

    from omnisep.evaluation.auto_negative import _OnePass
    from omnisep.models import SeparateNet, SeparateNetConfig

    torch.manual_seed(0)
    model = SeparateNet(SeparateNetConfig(ngf=4, depth=3, k=4, emb_dim=8)).eval()
    wave = 0.1 * torch.randn(20000)
    queries = torch.randn(3, 8)
    from omnisep.models import signal_path

    with torch.no_grad():
        expected = signal_path.separate(model, wave[None], queries[None], length=19000)[0].numpy()
    np.testing.assert_array_equal(_OnePass(model, wave).separate(queries, 19000), expected)


def test_one_pass_scan_equals_the_scan(tiny_checkpoint):
    import torch

    from omnisep.evaluation.auto_negative import _OnePass
    from omnisep.scan import scan
    from omnisep.states import load_checkpoint

    loaded = load_checkpoint(tiny_checkpoint)
    wave = (0.1 * torch.randn(65535, generator=torch.Generator().manual_seed(0))).float()
    expected = scan(loaded, wave.numpy(), 16000)
    result = _OnePass(loaded.model.eval(), wave).scan(loaded.bank, wave.numpy())
    np.testing.assert_allclose(result.energy_ratio, expected.energy_ratio, atol=1e-4)
    np.testing.assert_allclose(result.presence, expected.presence, atol=1e-4)
