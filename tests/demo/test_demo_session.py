"""What one press of "Separate" does, checked against the Python API on the tiny checkpoint."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from omnisep.api import Separator
from omnisep.demo.app import DemoSession
from omnisep.errors import OmniSepError

RATE = 22050


@pytest.fixture(scope="module")
def separator(tiny_checkpoint):
    return Separator(tiny_checkpoint)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo-inputs")
    rng = np.random.default_rng(7)
    t = np.arange(int(1.5 * RATE)) / RATE
    mixture = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * rng.standard_normal(t.size)], axis=1)
    sf.write(folder / "dog & violin.wav", mixture, RATE, subtype="FLOAT")
    sf.write(folder / "bark.wav", 0.3 * rng.standard_normal(20000), 16000)
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / "violin.png")
    (folder / "broken.wav").write_bytes(b"RIFF but not really a wave file")
    (folder / "broken.png").write_bytes(b"not a picture")
    return folder


@pytest.fixture
def session(separator, tmp_path):
    return DemoSession(separator, max_seconds=60, work_dir=tmp_path / "results")


def read(path):
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.T, rate


def test_text_query_gives_the_api_result(session, separator, files):
    result = session.run(str(files / "dog & violin.wav"), text="  dog barking ")
    mixture, _ = read(files / "dog & violin.wav")
    expected = separator.separate(mixture, RATE, text="dog barking", weights=[1.0])
    target, rate = read(result.target_path)
    residual, _ = read(result.residual_path)
    assert rate == RATE and target.shape == mixture.shape == (2, int(1.5 * RATE))
    np.testing.assert_array_equal(target, expected.target)  # float WAV: bit exact
    np.testing.assert_allclose(target + residual, mixture, atol=1e-6)
    assert np.abs(target - mixture).max() > 0.01
    # Download names come from the upload, made safe for a file system.
    assert result.target_path.name == "dog_violin_target.wav"
    assert result.residual_path.name == "dog_violin_residual.wav"
    with Image.open(result.spectrogram_path) as image:
        assert image.format == "PNG" and image.height > image.width / 3
    assert "**dog barking**" in result.status and "'dog & violin.wav' (1.5 s)" in result.status


def test_weighted_omni_query_with_negative(session, separator, files):
    mixture_path = str(files / "dog & violin.wav")
    result = session.run(
        mixture_path,
        text="violin",
        text_weight=0.3,
        image=str(files / "violin.png"),
        image_weight=1.2,
        audio_query=str(files / "bark.wav"),
        audio_weight=0.0,
        negative_text="speech",
        alpha=0.8,
    )
    mixture, _ = read(files / "dog & violin.wav")
    bark, bark_rate = read(files / "bark.wav")
    expected = separator.separate(
        mixture,
        RATE,
        text="violin",
        image=str(files / "violin.png"),
        audio_query=(bark[0], bark_rate),
        weights=[0.3, 1.2, 0.0],
        negative_text="speech",
        alpha=0.8,
    )
    target, _ = read(result.target_path)
    np.testing.assert_array_equal(target, expected.target)
    text_only = separator.separate(mixture, RATE, text="violin", negative_text="speech", alpha=0.8)
    # The tiny untrained model barely reacts to queries, but bit-exact outputs still tell them apart.
    assert not np.array_equal(target, text_only.target)
    assert "alpha = 0.8" in result.status


def test_query_aug_reports_the_bank_label(session, files):
    result = session.run(str(files / "dog & violin.wav"), text="a violin playing", query_aug=True)
    assert "Query-Aug: '" in result.status
    assert any(f"'{label}'" in result.status for label in ("dog barking", "violin", "speech"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mixture": None, "text": "dog"}, "Upload or record a mixture first."),
        ({"text": "   "}, "Give at least one query"),
        ({"text": "dog", "text_weight": 0.0}, "weight above 0"),
        ({"mixture": "broken.wav", "text": "dog"}, "Mixture: 'broken.wav'"),
        ({"text": "dog", "audio_query": "broken.wav"}, "Audio query: 'broken.wav'"),
        ({"image": "broken.png"}, "'broken.png' cannot be read"),
    ],
)
def test_bad_input_is_one_clear_sentence(session, files, kwargs, message):
    kwargs = {"mixture": "dog & violin.wav", **kwargs}
    for key in ("mixture", "audio_query", "image"):
        if kwargs.get(key):
            kwargs[key] = str(files / kwargs[key])
    with pytest.raises(OmniSepError) as caught:
        session.run(**kwargs)
    assert message in str(caught.value)
    assert str(files) not in str(caught.value)  # Gradio's upload folders mean nothing to users


def test_too_long_mixture_is_refused(separator, files, tmp_path):
    session = DemoSession(separator, max_seconds=1.0, work_dir=tmp_path)
    expected = "Mixture: 'dog & violin.wav' lasts 1.5 s, the demo takes at most 1.0 s; use `omnisep separate`"
    with pytest.raises(OmniSepError, match=re.escape(expected)):
        session.run(str(files / "dog & violin.wav"), text="dog")


def test_demo_command_reports_a_busy_port(tiny_checkpoint, capsys, tmp_path, monkeypatch):
    from omnisep.cli import main

    monkeypatch.setenv("OMNISEP_CACHE", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--model", str(tiny_checkpoint), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "choose another --port" in err and "Traceback" not in err


def test_demo_command_without_gradio_says_how_to_install(tiny_checkpoint, capsys, monkeypatch):
    import importlib.util

    from omnisep.cli import main

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real_find_spec(name, *a))
    assert main(["demo", "--model", str(tiny_checkpoint)]) == 2
    assert "pip install 'omnisep[demo]'" in capsys.readouterr().err


def test_automatic_negative_query_is_the_api_result_and_is_reported(session, separator, files):
    result = session.run(str(files / "dog & violin.wav"), text="dog barking", auto_negative=True)
    mixture, rate = read(files / "dog & violin.wav")
    expected = separator.separate(mixture, rate, text="dog barking", weights=[1.0], negative="auto")
    target, _ = read(result.target_path)
    np.testing.assert_allclose(target, expected.target, atol=1e-6)
    chosen = [c.label for c in expected.negatives]
    assert chosen and "dog barking" not in chosen  # the tiny bank has 3 labels; the query's own is never chosen
    assert f"removed '{chosen[0]}' (presence " in result.status  # the scan's word for its score
    with pytest.raises(OmniSepError, match="chooses what to remove itself"):
        session.run(str(files / "dog & violin.wav"), text="dog barking", negative_text="speech", auto_negative=True)


def test_scan_timeline_of_the_mixture(session, separator, files):
    from omnisep.demo.app import scan_mixture
    from omnisep.scan import DEFAULT_THRESHOLD, scan

    path, summary = scan_mixture(session, str(files / "dog & violin.wav"))
    with Image.open(path) as image:
        assert image.format == "PNG"
    mixture, rate = read(files / "dog & violin.wav")
    result = scan(separator, mixture, rate)
    best = result.ranking()[0]
    if result.presence[best] >= DEFAULT_THRESHOLD:
        assert summary.startswith(f"Scan: {result.labels[best]} ({result.presence[best]:.2f})")
    else:
        assert summary == "Scan: no label of the model reaches the threshold."


def test_example_rows_come_from_the_bundled_examples():
    from omnisep.demo.app import EXAMPLES_DIR, example_rows

    rows = example_rows()
    assert rows[0] == [str(EXAMPLES_DIR / "dog_and_violin.wav"), "dog barking", None, True]
    assert rows[1] == [str(EXAMPLES_DIR / "dog_and_violin.wav"), "", str(EXAMPLES_DIR / "queries" / "playing-violin.png"), False]
    assert len(rows) == 6 and all(Path(row[0]).is_file() for row in rows)
