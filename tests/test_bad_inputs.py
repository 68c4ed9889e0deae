"""Bad and unusual inputs, generated here, against the CLI and the Python API.

Every refusal must be: exit code 2, exactly one line ``omnisep: error: ...``
naming the file and the problem, no traceback (also none from C decoders on
file descriptor 2), the inputs untouched, and no file left behind (no output,
no hidden partial file). Inputs that are odd but valid (array layouts,
integer samples, hostile names, overlap longer than the chunk) must give the
right result, inside the output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from omnisep.cli import main
from omnisep.errors import OmniSepError

RATE = 16000
import omnisep

SRC = Path(omnisep.__file__).resolve().parent.parent  # the omnisep under test, for subprocesses


# -- helpers --------------------------------------------------------------------------------------


def noise(seconds: float, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal((int(seconds * RATE), channels))).astype(np.float32)


def files_under(folder: Path) -> dict[str, str]:
    """Every file (hidden ones included) under ``folder`` with its content hash."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_cli(capfd, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capfd.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, err: str, *fragments: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("omnisep: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert lines[0].rstrip().endswith("."), lines[0]
    return lines[0]


def encode_with_pyav(path: Path, container: str, codec: str, seconds: float = 6.0, rate: int = 48000) -> None:
    import av
    from av.audio.resampler import AudioResampler

    samples = (0.3 * np.sin(np.arange(int(seconds * rate)) * 0.05)).astype(np.float32)[None]
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = rate
        resampler = AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        for piece in resampler.resample(frame):
            for packet in stream.encode(piece):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)


def write_soundfile(path: Path, fmt: str, subtype: str, seconds: float = 6.0) -> None:
    sf.write(path, noise(seconds, 1)[:, 0], RATE, format=fmt, subtype=subtype)


def cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    cut = path.with_name("cut-" + path.name)
    cut.write_bytes(data[: len(data) // 2])
    path.unlink()
    return cut


def huge_png(path: Path, width: int = 30000, height: int = 30000) -> None:
    """A valid PNG header announcing 900 M pixels (a few hundred bytes on disk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


# -- files the CLI must refuse -----------------------------------------------------------------


def _wav(folder):
    p = folder / "take.wav"
    write_soundfile(p, "WAV", "PCM_16")
    return cut_in_half(p)


def _flac(folder):
    p = folder / "take.flac"
    write_soundfile(p, "FLAC", "PCM_16")
    return cut_in_half(p)


def _ogg(folder):
    p = folder / "take.ogg"
    write_soundfile(p, "OGG", "VORBIS")
    return cut_in_half(p)


def _mp3(folder):
    p = folder / "take.mp3"
    write_soundfile(p, "MP3", "MPEG_LAYER_III")
    return cut_in_half(p)


def _pyav(name, container, codec):
    def build(folder):
        p = folder / name
        encode_with_pyav(p, container, codec)
        return cut_in_half(p)

    return build


def _bytes(name, data):
    def build(folder):
        p = folder / name
        p.write_bytes(data)
        return p

    return build


def _missing(folder):
    return folder / "missing.wav"


def _nan(folder):
    audio = noise(2.0, 1)
    audio[RATE] = np.nan
    p = folder / "nan.wav"
    sf.write(p, audio, RATE, subtype="FLOAT")
    return p


def _no_samples(folder):
    p = folder / "silent-header.wav"
    sf.write(p, np.zeros((0, 1), np.float32), RATE)
    return p


def _empty_folder(folder):
    p = folder / "nothing-here"
    p.mkdir()
    return p


BAD_FILES = {
    "wav cut in half": (_wav, "truncated"),
    "flac cut in half": (_flac, "truncated"),
    "ogg vorbis cut in half": (_ogg, "truncated"),
    "mp3 cut in half": (_mp3, "truncated"),
    "opus cut in half": (_pyav("take.opus", "ogg", "libopus"), "truncated"),
    "webm cut in half": (_pyav("take.webm", "webm", "libopus"), "truncated"),
    "mkv cut in half": (_pyav("take.mkv", "matroska", "aac"), "truncated"),
    "m4a cut in half": (_pyav("take.m4a", "ipod", "aac"), "corrupt"),
    "mp4 cut in half": (_pyav("take.mp4", "mp4", "aac"), "corrupt"),
    "random bytes .wav": (_bytes("noise.wav", np.random.default_rng(1).bytes(20000)), "corrupt"),
    "random bytes .mp3": (_bytes("noise.mp3", np.random.default_rng(2).bytes(20000)), "corrupt"),
    "text named .flac": (_bytes("notes.flac", b"hello\n" * 500), "corrupt"),
    "unknown format": (_bytes("notes.xyz", b"hello\n" * 500), "not in a supported"),
    "empty file": (_bytes("empty.wav", b""), "empty"),
    "missing file": (_missing, "does not exist"),
    "folder without audio": (_empty_folder, "holds no audio"),
    "NaN samples": (_nan, "NaN"),
    "no samples": (_no_samples, "no audio samples"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_input_file_is_refused_in_one_sentence(case, tmp_path, capfd, tiny_checkpoint):
    build, problem = BAD_FILES[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = build(inputs)
    before = files_under(inputs)
    out = tmp_path / "out"
    code, _, err = run_cli(capfd, "separate", path, "--text", "violin", "--model", tiny_checkpoint, "-o", out,
                           "--chunk-seconds", "1")
    assert_refused(code, err, str(path), problem)
    assert files_under(inputs) == before  # inputs untouched
    assert files_under(out) == {}  # nothing written, no partial file


# -- where outputs go -------------------------------------------------------------------------


@pytest.fixture
def street(tmp_path) -> Path:
    path = tmp_path / "street.wav"
    sf.write(path, noise(1.5), RATE, subtype="PCM_16")
    return path


@pytest.mark.parametrize("name", ["...wav", "..wav", ".hidden.wav", "a b ünï.wav", "x" * 200 + ".wav"])
def test_hostile_names_stay_inside_the_output_folder(name, tmp_path, capfd, tiny_checkpoint, street):
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = inputs / name
    shutil.copy(street, source)
    out = tmp_path / "deep" / "out"
    code, _, err = run_cli(capfd, "separate", source, "--text", "violin", "--model", tiny_checkpoint, "-o", out)
    assert code == 0, err
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".wav" and p.parent != inputs and p != street]
    assert len(written) == 2
    for path in written:
        assert out.resolve() in path.resolve().parents
        assert path.parent.parent.parent == out  # OUT/<input>/<query>/file
    assert not (out / "violin").exists()  # not straight into -o


def test_an_input_that_is_its_own_output_is_never_overwritten(tmp_path, capfd, tiny_checkpoint, street):
    out = tmp_path / "out"
    assert run_cli(capfd, "separate", street, "--text", "violin", "--model", tiny_checkpoint, "-o", out)[0] == 0
    target = out / "street" / "violin" / "target.wav"
    moved = out / "target" / "violin"
    moved.parent.mkdir()
    # OUT/target/violin/target.wav separated into OUT -> OUT/target/violin/target.wav: itself
    shutil.copytree(target.parent, moved)
    victim = moved / "target.wav"
    before = victim.read_bytes()
    code, _, err = run_cli(capfd, "separate", victim, "--text", "violin", "--model", tiny_checkpoint, "-o", out,
                           "--overwrite")
    assert_refused(code, err, str(victim), "own outputs")
    assert victim.read_bytes() == before


def test_api_refuses_output_lists_that_overwrite_the_input_or_repeat_a_file(tmp_path, tiny_checkpoint, street):
    from omnisep.api import Query, Separator

    separator = Separator(tiny_checkpoint)
    before = street.read_bytes()
    with pytest.raises(OmniSepError, match="own outputs"):
        separator.separate_file(street, [Query(text="violin")], [street], overwrite=True)
    assert street.read_bytes() == before
    same = tmp_path / "o" / "same.wav"
    with pytest.raises(OmniSepError, match="named for two outputs"):
        separator.separate_file(street, [Query(text="violin")], [same], [same])
    assert not same.parent.exists() or files_under(same.parent) == {}


def test_an_output_that_appears_during_the_run_leaks_no_partial_file(tmp_path, tiny_checkpoint, street):
    from omnisep.api import Query, Separator

    separator = Separator(tiny_checkpoint)
    folder = tmp_path / "o"
    target, residual = folder / "target.wav", folder / "residual.wav"

    def someone_writes_target(count):
        if not target.exists():
            target.write_bytes(b"theirs")

    with pytest.raises(OmniSepError, match="created by another program"):
        separator.separate_file(street, [Query(text="violin")], [target], [residual], on_input=someone_writes_target)
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in folder.iterdir()) == ["target.wav"]


def test_output_folder_under_a_regular_file(tmp_path, capfd, tiny_checkpoint, street):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    code, _, err = run_cli(capfd, "separate", street, "--text", "violin", "--model", tiny_checkpoint,
                           "-o", blocker / "out")
    assert_refused(code, err, str(blocker), "is a file, not a folder")


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode(errors='replace').strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_sentence_and_leaves_no_partial_file(small_disk, capfd, tiny_checkpoint, street):
    out = small_disk / "out"
    code, _, err = run_cli(capfd, "separate", street, "--text", "violin", "--model", tiny_checkpoint, "-o", out)
    assert_refused(code, err, str(out), "no space left")
    assert [p.name for p in out.rglob("*") if p.is_file()] == []


def test_stale_partial_files_of_a_killed_run_are_removed(tmp_path, capfd, tiny_checkpoint, street):
    folder = tmp_path / "out" / "street" / "violin"
    folder.mkdir(parents=True)
    stale = [folder / ".target.wav.omnisep-99999999-0badcafe.part", folder / ".residual.wav.k3j_x9zq.part"]
    for path in stale:
        path.write_bytes(b"half a file")
    unrelated = folder / ".notes.part"
    unrelated.write_bytes(b"not ours")
    code, _, err = run_cli(capfd, "separate", street, "--text", "violin", "--model", tiny_checkpoint,
                           "-o", tmp_path / "out")
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == [".notes.part", "residual.wav", "target.wav"]


def test_outputs_follow_the_umask(tmp_path, capfd, tiny_checkpoint, street):
    previous = os.umask(0o022)
    try:
        code, _, err = run_cli(capfd, "separate", street, "--text", "violin", "--model", tiny_checkpoint,
                               "-o", tmp_path / "out")
    finally:
        os.umask(previous)
    assert code == 0, err
    for path in (tmp_path / "out" / "street" / "violin").iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path


# -- queries ------------------------------------------------------------------------------------


def test_text_that_is_not_unicode(tmp_path, capfd, tiny_checkpoint, street):
    # what Python makes of the byte 0xff in argv (surrogateescape)
    code, _, err = run_cli(capfd, "separate", street, "--text", "dog \udcff barking", "--model", tiny_checkpoint,
                           "-o", tmp_path / "out")
    assert_refused(code, err, "not a valid Unicode character")
    assert files_under(tmp_path / "out") == {}


def test_huge_image_query(tmp_path, capfd, tiny_checkpoint, street):
    image = tmp_path / "huge.png"
    huge_png(image)
    code, _, err = run_cli(capfd, "separate", street, "--image", image, "--model", tiny_checkpoint,
                           "-o", tmp_path / "out")
    assert_refused(code, err, str(image), "too large")


def test_long_text_and_alpha_without_negative_warn(tmp_path, capfd, tiny_checkpoint, street):
    code, _, err = run_cli(capfd, "separate", street, "--text", "a dog barking far away " * 400, "--alpha", "2",
                           "--model", tiny_checkpoint, "-o", tmp_path / "out", "--json")
    assert code == 0, err
    assert "characters long" in err and "has none" in err
    assert all(len(line) < 600 for line in err.splitlines())  # the text is not echoed whole


# -- arrays in the Python API ------------------------------------------------------------------


@pytest.fixture(scope="module")
def separator(tiny_checkpoint):
    from omnisep.api import Separator

    return Separator(tiny_checkpoint)


def test_soundfile_layout_is_recognised(separator):
    audio = noise(1.2, channels=2)  # [samples, channels], as soundfile.read returns it
    result = separator.separate(audio, RATE, text="violin")
    reference = separator.separate(np.ascontiguousarray(audio.T), RATE, text="violin")
    assert result.target.shape == audio.shape
    np.testing.assert_allclose(result.target, reference.target.T, atol=1e-6)
    np.testing.assert_allclose(result.target + result.residual, audio, atol=1e-6)


@pytest.mark.parametrize("dtype,scale,offset", [(np.int16, 32768, 0), (np.int32, 2**31, 0), (np.uint8, 128, 128)])
def test_integer_arrays_are_scaled_by_their_range(separator, dtype, scale, offset):
    floats = np.clip(noise(1.0, 1)[:, 0], -0.9, 0.9)
    integers = (floats * scale + offset).astype(dtype)
    result = separator.separate(integers, RATE, text="violin")
    reference = separator.separate((integers.astype(np.float64) - offset) / scale, RATE, text="violin")
    np.testing.assert_allclose(result.target, reference.target, atol=1e-6)
    assert np.abs(result.target).max() < 2


@pytest.mark.parametrize(
    "array,problem",
    [
        (np.zeros((1000, 100), np.float32), "channels"),
        (np.zeros((2, 3, 1000), np.float32), "shape"),
        (np.zeros(1000, np.complex64), "real numbers"),
        (np.zeros(1000, bool), "real numbers"),
    ],
)
def test_unusable_arrays_are_refused(separator, array, problem):
    with pytest.raises(OmniSepError, match=problem):
        separator.separate(array, RATE, text="violin")


# -- models, checkpoints, configs --------------------------------------------------------------


def _damage(checkpoint: Path, folder: Path, how: str) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    damaged = folder / f"damaged-{how}"
    shutil.copytree(checkpoint, damaged)
    weights, config = damaged / "model.safetensors", damaged / "config.json"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    elif how == "nan":
        tensors = load_file(str(weights))
        name = next(n for n, t in tensors.items() if t.is_floating_point() and t.dim() > 1)
        tensors[name] = torch.full_like(tensors[name], float("nan"))
        save_file(tensors, str(weights), metadata={"format": "omnisep-checkpoint"})
    elif how == "no-ngf":
        data = json.loads(config.read_text())
        del data["model"]["ngf"]
        config.write_text(json.dumps(data))
    elif how == "not-json":
        config.write_text("{ not json")
    elif how == "no-config":
        config.unlink()
    return damaged


@pytest.mark.parametrize(
    "how,problem",
    [("truncated", "damaged"), ("nan", "NaN"), ("no-ngf", "ngf"), ("not-json", "config.json"), ("no-config", "config.json")],
)
def test_damaged_checkpoints(how, problem, tmp_path, capfd, tiny_checkpoint, street):
    damaged = _damage(tiny_checkpoint, tmp_path, how)
    code, _, err = run_cli(capfd, "separate", street, "--text", "violin", "--model", damaged, "-o", tmp_path / "out")
    assert_refused(code, err, str(damaged), problem)
    assert files_under(tmp_path / "out") == {}


def test_checkpoint_of_an_encoder_with_options_is_usable(tmp_path, capfd, street):
    import torch

    from omnisep.encoders import get_encoder
    from omnisep.models import SeparateNet, SeparateNetConfig
    from omnisep.states import save_checkpoint

    encoder = get_encoder("toy", dim=16)
    torch.manual_seed(0)
    model = SeparateNet(SeparateNetConfig(ngf=4, depth=4, k=4, emb_dim=16))
    checkpoint = save_checkpoint(tmp_path / "toy16", model, encoder.identity(), None)
    code, _, err = run_cli(capfd, "separate", street, "--text", "violin", "--model", checkpoint, "-o", tmp_path / "out")
    assert code == 0, err


def test_models_lists_only_models(capfd):
    code, out, _ = run_cli(capfd, "models", "--json")
    assert code == 0
    rows = json.loads(out)
    assert "encoder-heads" not in [row["name"] for row in rows]
    assert all(row["error"] is None for row in rows if row["source"] == "bundled")


@pytest.fixture
def train_config(tmp_path) -> Path:
    path = tmp_path / "train.toml"
    path.write_text(f'out_dir = "{tmp_path / "run"}"\n[data]\ntrain_manifest = "{tmp_path / "m.csv"}"\n')
    return path


@pytest.mark.parametrize(
    "override,problem",
    [
        ("optim.lr=nan", "optim.lr must be a finite number"),
        ("optim.lr=-1", "optim.lr must be positive"),
        ("optim.grad_clip=inf", "optim.grad_clip must be a finite number"),
        ("optim.nonsense=1", "unknown key"),
        ("steps=[1", "steps must be int"),
    ],
)
def test_bad_training_configs(override, problem, train_config, capfd):
    code, _, err = run_cli(capfd, "train", train_config, "--set", override)
    assert_refused(code, err, problem)


def test_training_into_a_file(train_config, tmp_path, capfd):
    (tmp_path / "run").write_text("a file")
    code, _, err = run_cli(capfd, "train", train_config)
    assert_refused(code, err, str(tmp_path / "run"), "not a folder")


def test_a_mixture_of_a_recording_with_itself_is_refused(tmp_path):
    from omnisep.data.manifest import ManifestItem
    from omnisep.data.mixtures import read_mixture_list

    items = [ManifestItem(id=name, audio=tmp_path / f"{name}.wav", label=name) for name in ("a", "b")]
    mixtures = tmp_path / "mixtures.jsonl"
    mixtures.write_text('{"target": "a", "interferers": ["b"]}\n{"target": "b", "interferers": ["b"]}\n')
    with pytest.raises(OmniSepError, match=r"line 2: item 'b' .* used twice"):
        read_mixture_list(mixtures, items, 2)


def test_identical_references_are_skipped_not_a_crash():
    from omnisep.evaluation.metrics import score_mixture

    same = noise(2.0, 1)[:, 0]
    assert score_mixture(same, same, 2 * same, backend="fast") is None


# -- signals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum,exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_leave_nothing_behind(signum, exit_code, tmp_path, tiny_checkpoint):
    long_input = tmp_path / "long.wav"
    sf.write(long_input, noise(240.0, 2), RATE, subtype="PCM_16")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen(
        [sys.executable, "-m", "omnisep", "separate", str(long_input), "--text", "violin", "--model",
         str(tiny_checkpoint), "-o", str(out), "--chunk-seconds", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        # A test run started in the background (`cmd &` without job control) inherits SIGINT ignored, and so
        # would the child: give it the default disposition a user's terminal gives.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".part") for p in out.rglob("*")) and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    time.sleep(0.3)  # inside the separation loop
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    err = err.decode()
    assert process.returncode == exit_code, err
    assert "Traceback" not in err
    assert [p for p in out.rglob("*") if p.is_file()] == []
