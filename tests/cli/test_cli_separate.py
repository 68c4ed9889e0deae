import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from omnisep.cli import main
from omnisep.cli.separate import slugify

RATE = 22050
LSB = 1 / 32768


@pytest.fixture
def mix(tmp_path):
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal((2, int(1.5 * RATE)))).astype(np.float32)
    path = tmp_path / "street.wav"
    sf.write(path, audio.T, RATE, subtype="PCM_16")
    return path


def run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("omnisep: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_separation_writes_target_and_residual_that_sum_to_the_input(tmp_path, capsys, mix, tiny_checkpoint):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "separate", mix, "--text", "dog barking", "--negative-text", "speech",
                            "--model", tiny_checkpoint, "-o", out)
    assert code == 0, err
    folder = out / "street" / "dog-barking-minus-speech"
    assert sorted(p.name for p in folder.iterdir()) == ["residual.wav", "target.wav"]
    mixture, _ = sf.read(mix, dtype="float32")
    target, rate = sf.read(folder / "target.wav", dtype="float32")
    residual, _ = sf.read(folder / "residual.wav", dtype="float32")
    assert rate == RATE and target.shape == mixture.shape
    assert np.abs(target + residual - mixture).max() <= 1.0001 * LSB  # two roundings of half an LSB
    assert 0.05 < np.abs(target).max() / np.abs(mixture).max() < 0.95
    assert "dog barking - speech" in err  # the progress line


def test_json_plot_each_flac_and_folder_input(tmp_path, capsys, mix, tiny_checkpoint):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "separate", tmp_path, "--text", "dog barking", "--text", "violin", "--each",
                            "--model", tiny_checkpoint, "-o", out, "--json", "--plot", "--format", "flac",
                            "--bits", "24", "--downmix")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["encoder"] == "toy"
    (result,) = report["results"]
    assert result["input"] == str(mix) and result["channels"] == 1 and result["sample_rate"] == RATE
    assert [row["query"] for row in result["outputs"]] == ["dog barking", "violin"]
    for row in result["outputs"]:
        info = sf.info(row["target"])
        assert (info.format, info.subtype, info.channels) == ("FLAC", "PCM_24", 1)
        with Image.open(row["plot"]) as image:
            assert image.format == "PNG" and image.width > 500
    assert (out / "street" / "violin" / "residual.flac").exists()


def test_weights_and_query_aug(tmp_path, capsys, mix, tiny_checkpoint):
    code, stdout, err = run(capsys, "separate", mix, "--text", "VIOLIN", "--text", "music", "--weights", "3,1",
                            "--query-aug", "--model", tiny_checkpoint, "-o", tmp_path / "out", "--json")
    assert code == 0, err
    (row,) = json.loads(stdout)["results"][0]["outputs"]
    assert row["query"] == "violin" and 0.5 < row["query_aug_score"] <= 1.0 + 1e-6
    assert row["target"].endswith("violin-plus-music/target.wav")
    code, _, err = run(capsys, "separate", mix, "--text", "a", "--weights", "1,2", "--model", tiny_checkpoint,
                       "-o", tmp_path / "out2")
    assert code == 2 and "2 weight(s) were given for 1 query part(s)" in one_error_line(err)


def test_existing_outputs_need_overwrite(tmp_path, capsys, mix, tiny_checkpoint):
    args = ["separate", mix, "--text", "violin", "--model", tiny_checkpoint, "-o", tmp_path / "out"]
    assert run(capsys, *args)[0] == 0
    target = tmp_path / "out" / "street" / "violin" / "target.wav"
    before = target.read_bytes()
    code, _, err = run(capsys, *args)
    assert code == 2
    assert one_error_line(err) == f"omnisep: error: '{target}' already exists; pass --overwrite to replace it."
    assert target.read_bytes() == before
    assert run(capsys, *args, "--overwrite")[0] == 0


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.wav", None, "does not exist."),
        ("empty.wav", b"", "is empty (0 bytes)."),
        ("broken.flac", b"fLaC" + bytes(range(256)) * 20, "is corrupt or not really a flac file"),
        ("notes.txt", b"just some text\n" * 100, "is not in a supported audio or video format"),
    ],
)
def test_bad_inputs_exit_2_with_one_sentence(tmp_path, capsys, tiny_checkpoint, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, _, err = run(capsys, "separate", path, "--text", "violin", "--model", tiny_checkpoint, "-o", tmp_path / "out")
    assert code == 2
    line = one_error_line(err)
    assert str(path) in line and message in line
    assert not (tmp_path / "out").exists()


def test_nan_found_midway_leaves_no_output(tmp_path, capsys, tiny_checkpoint):
    audio = np.zeros(3 * RATE, np.float32) + 0.1
    audio[2 * RATE] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    code, _, err = run(capsys, "separate", path, "--text", "violin", "--model", tiny_checkpoint, "-o", tmp_path / "out",
                       "--chunk-seconds", "1")
    assert code == 2 and "contains NaN or infinite sample values" in one_error_line(err)
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert leftovers == []


def test_damaged_checkpoint(tmp_path, capsys, mix, tiny_checkpoint):
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_checkpoint, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = run(capsys, "separate", mix, "--text", "violin", "--model", damaged, "-o", tmp_path / "out")
    assert code == 2 and "is damaged or not a safetensors file" in one_error_line(err)


def test_usage_errors(tmp_path, capsys, mix, tiny_checkpoint):
    code, _, err = run(capsys, "separate", mix, "--model", tiny_checkpoint)
    assert code == 2 and "give at least one query" in err
    code, _, err = run(capsys, "separate", mix, "--text", "x", "--format", "flac", "--bits", "float")
    assert code == 2 and "FLAC stores integer samples only" in err
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(mix, other / "street.wav")
    code, _, err = run(capsys, "separate", mix, other / "street.wav", "--text", "x", "--model", tiny_checkpoint)
    assert code == 2 and "would both write to a folder named 'street'" in one_error_line(err)
    code, _, err = run(capsys, "separate", str(tmp_path / "*.mp3"), "--text", "x", "--model", tiny_checkpoint)
    assert code == 2 and "matches no file" in one_error_line(err)


def test_help_reads_well(capsys):
    code, out, _ = run(capsys, "separate", "--help")
    assert code == 0
    assert "Examples:" in out and "--negative-text" in out and "target + residual equals the input" in out


def test_slugs():
    assert slugify("Dog barking - speech") == "dog-barking-minus-speech"
    assert slugify("violin + red.png") == "violin-plus-red-png"
    assert slugify("!!!") == "query"


def test_automatic_negative_reports_its_choice(tmp_path, capsys, mix, tiny_checkpoint):
    from omnisep.api import Separator
    from omnisep.audio import load_audio

    args = ["separate", str(mix), "--text", "dog barking", "--negative", "auto", "-o", str(tmp_path), "--model", str(tiny_checkpoint), "--json"]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]["outputs"][0]
    audio, rate = load_audio(mix)
    expected = Separator(tiny_checkpoint).separate(audio, rate, text="dog barking", negative="auto")
    assert [n["label"] for n in row["negatives"]] == [c.label for c in expected.negatives]
    assert row["query"] == expected.query_label and row["query"].endswith("(auto)")
    assert "dog-barking-minus-auto" in row["target"]
    target, _ = sf.read(row["target"], dtype="float32", always_2d=True)
    np.testing.assert_allclose(target.T, expected.target, atol=1e-4)
    assert main(args[:-1] + ["--negative-text", "speech"]) == 2
    assert main(["separate", str(mix), "--text", "x", "--negative-labels", "2", "--model", str(tiny_checkpoint)]) == 2


def test_automatic_negative_from_the_residual(tmp_path, capsys, mix, tiny_checkpoint):
    from omnisep.api import Separator
    from omnisep.audio import load_audio
    from omnisep.negatives import AutoNegative

    args = ["separate", str(mix), "--text", "dog barking", "--negative", "auto", "--negative-from", "residual",
            "-o", str(tmp_path), "--model", str(tiny_checkpoint), "--json"]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]["outputs"][0]
    audio, rate = load_audio(mix)
    expected = Separator(tiny_checkpoint).separate(audio, rate, text="dog barking", negative=AutoNegative(source="residual"))
    # The streamed file and the in-memory array hear the same residual and choose the same labels.
    assert row["negatives"] and [n["label"] for n in row["negatives"]] == [c.label for c in expected.negatives]
    target, _ = sf.read(row["target"], dtype="float32", always_2d=True)
    np.testing.assert_allclose(target.T, expected.target, atol=1e-4)
    assert main(["separate", str(mix), "--text", "x", "--negative-from", "residual", "--model", str(tiny_checkpoint)]) == 2
    assert "add --negative auto" in capsys.readouterr().err


def test_a_model_with_a_second_look_uses_it_unless_told_not_to(tmp_path, capsys, mix, tiny_checkpoint):
    """A model that records inference.second_look separates a quiet output again (here a gate just under
    the input's energy, so every output is looked at twice); --no-second-look gives the one-pass output."""
    model = tmp_path / "looking"
    shutil.copytree(tiny_checkpoint, model)
    config = json.loads((model / "config.json").read_text())
    config.setdefault("inference", {})["second_look"] = {"below_db": -0.01}
    (model / "config.json").write_text(json.dumps(config))
    outputs = {}
    for name, extra in (("looked", []), ("once", ["--no-second-look"]), ("plain", [])):
        chosen = tiny_checkpoint if name == "plain" else model
        code, _, err = run(capsys, "separate", mix, "--text", "dog barking", "--model", chosen, "-o", tmp_path / name, *extra)
        assert code == 0, err
        outputs[name], _ = sf.read(tmp_path / name / "street" / "dog-barking" / "target.wav", dtype="float32")
    assert np.abs(outputs["once"] - outputs["plain"]).max() == 0.0
    assert np.abs(outputs["looked"] - outputs["plain"]).max() > 0.01
    # Two passes' masks multiplied: never more than one pass returned.
    assert np.square(outputs["looked"]).sum() < np.square(outputs["plain"]).sum()
    config["inference"]["second_look"] = {"below_db": 5}
    (model / "config.json").write_text(json.dumps(config))
    code, _, err = run(capsys, "separate", mix, "--text", "dog barking", "--model", model, "-o", tmp_path / "bad")
    assert code == 2 and "inference.second_look.below_db must be a negative number of dB, got 5" in one_error_line(err)
