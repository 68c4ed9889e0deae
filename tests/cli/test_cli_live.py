"""`omnisep live` in pipe mode, run as a subprocess with PCM on stdin and stdout."""

import importlib.util
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from omnisep.api import Separator

RATE = 22050


def run_live(args, data: bytes):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "omnisep", "live", *args], input=data, capture_output=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def audio():
    return (0.2 * np.random.default_rng(0).standard_normal((2, int(1.0 * RATE)))).astype(np.float32)


def test_raw_pcm_pipe_gives_the_python_streams_output(tiny_checkpoint, audio):
    pcm = (audio.T * 32767).round().astype("<i2")
    args = ["--text", "dog barking", "--model", str(tiny_checkpoint), "--rate", str(RATE), "--channels", "2", "--latency", "0.25"]
    done = run_live(args + ["--output", "residual"], pcm.tobytes())
    assert done.returncode == 0, done.stderr.decode()
    assert b"latency" in done.stderr
    out = np.frombuffer(done.stdout, "<i2").reshape(-1, 2).T
    assert out.shape == audio.shape
    stream = Separator(tiny_checkpoint).stream(text="dog barking", sample_rate=RATE, channels=2, latency=0.25)
    mixture = pcm.T.astype(np.float32) / 32768.0
    parts = [stream.push(mixture[:, i : i + 1024])[1] for i in range(0, mixture.shape[1], 1024)] + [stream.finish()[1]]
    expected = (np.clip(np.concatenate(parts, axis=1), -1, 1) * 32767).round()
    assert np.abs(out - expected).max() <= 1


def test_wav_on_stdin_and_float_output(tiny_checkpoint, audio):
    buffer = io.BytesIO()
    soundfile.write(buffer, audio.T, RATE, format="WAV", subtype="FLOAT")
    done = run_live(["--text", "violin", "--model", str(tiny_checkpoint), "--format", "wav"], buffer.getvalue())
    assert done.returncode == 0, done.stderr.decode()
    assert len(done.stdout) == audio.size * 2  # s16le for wav input


def test_bad_settings_give_one_line_and_exit_2(tiny_checkpoint):
    done = run_live(["--text", "dog", "--model", str(tiny_checkpoint), "--latency", "0.02"], b"\0\0" * 100)
    assert done.returncode == 2
    assert b"too short" in done.stderr and b"Traceback" not in done.stderr
    done = run_live(["--text", "dog", "--model", str(tiny_checkpoint), "--format", "wav"], b"not a wav file at all")
    assert done.returncode == 2 and b"not a readable wav" in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("sounddevice") is not None, reason="sounddevice is installed here")
def test_sound_card_mode_without_portaudio_says_what_to_install(tiny_checkpoint):
    done = run_live(["--text", "dog", "--model", str(tiny_checkpoint), "--card"], b"")
    assert done.returncode == 2
    assert b"sounddevice" in done.stderr and b"Traceback" not in done.stderr


class FakeCard:
    """Stands in for the sounddevice module: a stream that records 0.1 s blocks, then Ctrl-C."""

    PortAudioError = RuntimeError

    def __init__(self, blocks=12):
        self.blocks, self.read_frames, self.written = blocks, 0, []

    def query_devices(self, device=None, kind=None):
        return {"default_samplerate": 16000.0, "name": "fake"} if kind else "0 fake card"

    def Stream(self, samplerate, blocksize, channels, dtype, device):
        card = self

        class Stream:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def read(self, frames):
                if card.blocks == 0:
                    raise KeyboardInterrupt
                card.blocks -= 1
                card.read_frames += frames
                return np.full((frames, channels), 0.1, np.float32), card.blocks == 5  # one overflow

            def write(self, data):
                card.written.append(data)
                return False

        return Stream()


def test_sound_card_loop_plays_what_it_records_and_reports_on_ctrl_c(tiny_checkpoint, monkeypatch, capsys):
    from omnisep.cli import main

    card = FakeCard()
    monkeypatch.setitem(sys.modules, "sounddevice", card)
    assert main(["live", "--text", "dog", "--model", str(tiny_checkpoint), "--card", "--channels", "2"]) == 0
    written = np.concatenate(card.written)
    assert written.shape == (card.read_frames, 2)
    err = capsys.readouterr().err
    assert "input overflows 1, output underruns 0" in err
    assert main(["live", "--list-devices"]) == 0
    assert "fake card" in capsys.readouterr().out
