"""The training plot names the loss the run was trained on, read from the config its checkpoints record."""

import json

from PIL import Image

from omnisep.plotting.training import loss_name, plot_training


def _run(folder, target):
    folder.mkdir()
    rows = [{"step": s, "loss": 1.0 / s} for s in range(1, 41)] + [{"step": 40, "val_text": 0.5, "val_mean": 0.5}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if target is not None:
        (folder / "last").mkdir()
        (folder / "last" / "config.json").write_text(json.dumps({"training": {"config": {"loss": {"target": target}}}}))
    return folder / "metrics.jsonl"


def test_the_axis_names_the_runs_loss(tmp_path):
    assert loss_name(_run(tmp_path / "w", "waveform")) == "minus thresholded SNR (dB)"
    assert loss_name(_run(tmp_path / "b", "binary")) == "weighted BCE"
    assert loss_name(_run(tmp_path / "none", None)) == "weighted BCE"  # older runs record no loss section
    out = plot_training(tmp_path / "w" / "metrics.jsonl", tmp_path / "curve.png")
    assert Image.open(out).size[0] > 300
