"""`omnisep scan` end to end on the tiny checkpoint: table, JSON, plot, user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from omnisep.cli import main
from omnisep.scan import scan
from omnisep.states import load_checkpoint


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """1.5 s of noise at 22.05 kHz, stereo, with a silent last quarter second."""
    rng = np.random.default_rng(5)
    wave = 0.2 * rng.standard_normal((33075, 2))
    wave[-5512:] = 0.0
    path = tmp_path_factory.mktemp("scan") / "street.wav"
    sf.write(path, wave, 22050, subtype="FLOAT")
    return path


def test_json_output_is_the_scan_of_the_file(tiny_checkpoint, recording, capsys):
    assert main(["scan", str(recording), "--model", str(tiny_checkpoint), "--json", "--threshold", "0.2"]) == 0
    summary = json.loads(capsys.readouterr().out)

    audio, rate = sf.read(recording, dtype="float32", always_2d=True)
    expected = scan(load_checkpoint(tiny_checkpoint), audio.T, rate)
    assert summary["input"] == str(recording)
    assert summary["threshold"] == 0.2 and summary["frame_seconds"] == 0.5
    assert summary["duration_seconds"] == 1.5
    assert summary["times"] == [0.0, 0.5, 1.0]
    labels = {entry["label"]: entry for entry in summary["labels"]}
    assert set(labels) == {"dog barking", "violin", "speech"}
    for index, label in enumerate(expected.labels):
        assert labels[label]["presence"] == pytest.approx(float(expected.presence[index]), abs=1e-4)
        assert labels[label]["energy_ratio"] == pytest.approx(expected.energy_ratio[index].tolist(), abs=1e-4)
        assert labels[label]["present"] == bool(expected.presence[index] >= 0.2)
    presences = [entry["presence"] for entry in summary["labels"]]
    assert presences == sorted(presences, reverse=True)


def test_table_and_plot(tiny_checkpoint, recording, tmp_path, capsys):
    plot = tmp_path / "scan.png"
    args = ["scan", str(recording), "--model", str(tiny_checkpoint), "--plot", str(plot), "--top", "2"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "street.wav: 1.5 s, 3 labels scanned" in captured.out
    assert sum(label in captured.out for label in ("dog barking", "violin", "speech")) == 2  # --top 2
    assert f"wrote {plot}" in captured.err
    with Image.open(plot) as image:
        assert image.format == "PNG"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--plot", "scan.jpg"], "must be a .png file"),
        (["--plot", "no/such/folder/scan.png"], "its folder does not exist"),
        (["--model", "no/such/model"], "does not exist"),
    ],
)
def test_user_errors_exit_2_with_one_sentence(tiny_checkpoint, recording, capsys, extra, message):
    args = ["scan", str(recording), "--model", str(tiny_checkpoint), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_file_that_is_not_audio_exits_2(tiny_checkpoint, tmp_path, capsys):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("not audio")
    assert main(["scan", str(bogus), "--model", str(tiny_checkpoint)]) == 2
    assert "notes.wav" in capsys.readouterr().err


def test_export_writes_the_four_files(tiny_checkpoint, recording, tmp_path, capsys):
    args = ["scan", str(recording), "--model", str(tiny_checkpoint), "--export", str(tmp_path), "--threshold", "0.05"]
    assert main(args) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["street.labels.txt", "street.scan.json", "street.segments.csv", "street.timeline.png"]
    summary = json.loads((tmp_path / "street.scan.json").read_text())
    assert summary["input"] == str(recording) and summary["threshold"] == 0.05
    lines = (tmp_path / "street.labels.txt").read_text().splitlines()
    assert len(lines) == len(summary["segments"])
    for line, segment in zip(lines, summary["segments"]):
        start, end, label = line.split("\t")
        assert (float(start), float(end), label) == pytest.approx((segment["start"], segment["end"], segment["label"]))
    assert "wrote" in capsys.readouterr().err
    # A second run refuses to overwrite (exit 2, one sentence), unless asked.
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


def test_the_threshold_defaults_to_the_models_own(tiny_checkpoint, recording, tmp_path, capsys):
    import shutil

    from omnisep.scan import DEFAULT_THRESHOLD

    assert main(["scan", str(recording), "--model", str(tiny_checkpoint), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["threshold"] == DEFAULT_THRESHOLD  # a model that records none
    model = tmp_path / "tuned"
    shutil.copytree(tiny_checkpoint, model)
    config = json.loads((model / "config.json").read_text())
    config["inference"] = {"scan": {"threshold": 0.61}}
    (model / "config.json").write_text(json.dumps(config))
    assert main(["scan", str(recording), "--model", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["threshold"] == 0.61
    config["inference"] = {"scan": {"threshold": 7}}
    (model / "config.json").write_text(json.dumps(config))
    assert main(["scan", str(recording), "--model", str(model)]) == 2
    assert "inference.scan.threshold must be between 0 and 1" in capsys.readouterr().err


def test_a_model_that_records_a_verification_is_verified_unless_asked_not_to(tiny_checkpoint, recording, tmp_path, capsys):
    """The toy encoder listens to the top labels; --no-verify gives the plain scan and the plain threshold."""
    import shutil

    model = tmp_path / "verifying"
    shutil.copytree(tiny_checkpoint, model)
    config = json.loads((model / "config.json").read_text())
    config["inference"] = {"scan": {"threshold": 0.61, "verify": {"top": 2, "window_seconds": 2.0, "threshold": 0.07}}}
    (model / "config.json").write_text(json.dumps(config))

    assert main(["scan", str(recording), "--model", str(model), "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["verified"] is True and verified["threshold"] == 0.07
    assert verified["window_starts"] == [0.0]  # 1.5 s, under 1.25 windows of 2 s: one window
    listened = [entry for entry in verified["labels"] if entry["similarity"][0] > 1e-3]
    assert 1 <= len(listened) <= 2  # at most the top 2 labels are believed
    for entry in verified["labels"]:
        expected = [r * entry["similarity"][0] for r in entry["energy_ratio"]]
        assert entry["evidence"] == pytest.approx(expected, abs=2e-4)

    assert main(["scan", str(recording), "--model", str(model), "--json", "--no-verify"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["verified"] is False and plain["threshold"] == 0.61 and "window_starts" not in plain
    for entry in plain["labels"]:
        assert entry["evidence"] == entry["energy_ratio"]
