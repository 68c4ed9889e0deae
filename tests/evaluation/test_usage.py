"""Usage scores on a case whose answers are known: a model that returns the mixture for every query."""

import numpy as np
import torch

from omnisep.evaluation.usage import _auc, energy_db, markdown, summary, usage_items


def test_auc_and_energy():
    assert _auc(np.array([0.9, 0.1, 0.5, 0.2]), [0, 2]) == 1.0
    assert _auc(np.array([0.1, 0.9, 0.5, 0.2]), [0, 2]) == 0.25
    x = np.ones(100)
    assert abs(energy_db(0.1 * x, x) + 20.0) < 1e-9
    assert energy_db(0 * x, x) == -120.0


def test_a_pass_through_model_is_not_selective_and_returns_everything(tiny_checkpoint, tmp_path):
    """Masks of 0.5 everywhere: every query returns half the mixture (-6.02 dB), so SDRi and selectivity are 0 dB."""
    from omnisep.data.mixtures import load_test_set
    from omnisep.states import load_checkpoint
    from omnisep.data.synthetic import make_corpus

    manifest = make_corpus(tmp_path / "corpus", train_per_class=1, val_per_class=0, test_per_class=2)
    from omnisep.data.manifest import read_manifest

    items = [item for item in read_manifest(manifest) if item.split == "test"]
    labels = {"low hum": "dog barking", "high whistle": "violin", "hiss": "speech"}
    rows = []
    for a in items:
        for b in items:
            if a.label != b.label and a.label in labels and b.label in labels:
                rows.append({"target": a.id, "interferers": [b.id]})
    (tmp_path / "mixtures.jsonl").write_text("".join(__import__("json").dumps(r) + "\n" for r in rows[:4]))
    test_set = load_test_set(tmp_path / "mixtures.jsonl", manifest)
    for item in test_set.items:
        item.label = labels.get(item.label, item.label)
    loaded = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        loaded.model.scale.zero_()
        loaded.model.bias.fill_(0.0)  # every mask is 0.5
        results = usage_items(loaded, test_set)
    report = summary(results)
    assert report["mixtures"] == 4
    assert abs(report["absent_query_energy_db"]["mean"] + 6.02) < 0.05
    assert abs(report["selectivity_db"]["mean"]) < 0.01
    # scaling the mixture does not separate anything (BSS-eval's joint projection leaves a few tenths of a dB)
    assert abs(report["sdri_text_db"]["mean"]) < 0.5
    assert report["scan_auc"]["mean"] == 0.5  # every label scores the same
    table = markdown(report, "t")
    assert "| dog barking |" in table and "-6.02" in table
    # A second look under -3 dB asks every (half-loud) answer again: masks 0.5 x 0.5 return -12.04 dB; the
    # scan is not looked at twice.
    with torch.no_grad():
        looked = summary(usage_items(loaded, test_set, second_look=-3.0))
    assert abs(looked["absent_query_energy_db"]["mean"] + 12.04) < 0.05
    assert looked["scan_auc"]["mean"] == 0.5
