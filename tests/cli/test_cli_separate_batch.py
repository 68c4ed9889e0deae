"""`omnisep separate` over many files: a bad file is skipped, reruns resume, shards split the work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from omnisep.cli import main

RATE = 16000


@pytest.fixture
def archive(tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "d", "e"):
        sf.write(folder / f"{name}.wav", (0.1 * rng.standard_normal(RATE)).astype(np.float32), RATE)
    (folder / "c.wav").write_bytes(b"RIFF" + bytes(200))  # corrupt
    return folder


def run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def Path_name(text):
    return Path(text).name


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_bad_file_is_reported_and_skipped_and_a_rerun_resumes(archive, tmp_path, capsys, tiny_checkpoint):
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    args = ["separate", archive, "--text", "violin", "--model", tiny_checkpoint, "-o", out, "--log", log]
    code, _, err = run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert any("c.wav" in line and line.startswith("omnisep: error: ") for line in lines)
    assert lines[-1] == "omnisep: error: 1 of 5 inputs were refused (each named above); the others were separated."
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "d", "e"]
    records = read_log(log)
    assert {Path_name(r["input"]): r["status"] for r in records} == {
        "a.wav": "done", "b.wav": "done", "c.wav": "refused", "d.wav": "done", "e.wav": "done"
    }
    refused = next(r for r in records if r["status"] == "refused")
    assert "c.wav" in refused["message"] and refused["outputs"] == []
    done = next(r for r in records if r["status"] == "done")
    assert len(done["outputs"]) == 2 and all(name.endswith(".wav") for name in done["outputs"])

    # A rerun without a flag refuses to overwrite; with --skip-existing it resumes (nothing left to do).
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    code, _, err = run(capsys, *args)
    assert code == 2 and "--skip-existing" in err
    code, _, err = run(capsys, *args, "--skip-existing")
    assert code == 2  # c.wav is still corrupt
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == stamps
    statuses = [r["status"] for r in read_log(log)[-5:]]
    assert sorted(statuses) == ["refused", "skipped", "skipped", "skipped", "skipped"]

    # Once the bad file is fixed, the rerun separates only it.
    sf.write(archive / "c.wav", np.zeros(RATE, np.float32) + 0.01, RATE)
    code, _, err = run(capsys, *args, "--skip-existing")
    assert code == 0, err
    assert (out / "c" / "violin" / "target.wav").is_file()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav") if p in stamps} == stamps


def test_shards_split_the_inputs_between_processes(archive, tmp_path, capsys, tiny_checkpoint, monkeypatch):
    (archive / "c.wav").unlink()
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    base = ["separate", archive, "--text", "violin", "--model", tiny_checkpoint, "-o", out, "--log", log]
    assert run(capsys, *base, "--shard", "0/2")[0] == 0
    monkeypatch.setenv("RANK", "1")  # torchrun's variables when --shard is not given
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert run(capsys, *base)[0] == 0
    first = read_log(tmp_path / "log.shard-0-of-2.jsonl")
    second = read_log(tmp_path / "log.shard-1-of-2.jsonl")
    names = [Path_name(r["input"]) for r in first + second]
    assert sorted(names) == ["a.wav", "b.wav", "d.wav", "e.wav"] and len(set(names)) == 4
    assert len(first) == len(second) == 2
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "d", "e"]


@pytest.mark.parametrize("shard", ["2/2", "x/2", "0/0", "-1/3"])
def test_bad_shards_are_one_sentence(shard, archive, capsys, tiny_checkpoint, tmp_path):
    code, _, err = run(capsys, "separate", archive, "--text", "violin", "--model", tiny_checkpoint,
                       "-o", tmp_path / "out", "--shard", shard)
    assert code == 2 and err.startswith("omnisep: error: --shard") and len(err.strip().splitlines()) == 1


def test_overwrite_and_skip_existing_contradict(archive, capsys, tiny_checkpoint):
    code, _, err = run(capsys, "separate", archive, "--text", "violin", "--overwrite", "--skip-existing")
    assert code == 2 and "contradict" in err
