"""omnisep.fileio: the one place where files are written atomically."""

from __future__ import annotations

import errno
import os
import signal

import pytest
import torch
from safetensors.torch import save_file

from omnisep import fileio
from omnisep.errors import OmniSepError
from omnisep.states import save_checkpoint


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_files_and_folders_follow_the_umask_even_when_a_writer_makes_0600_files(tmp_path, umask_027):
    assert fileio.current_umask() == 0o027
    with fileio.atomic_path(tmp_path / "w.safetensors") as temp:
        save_file({"a": torch.zeros(2)}, str(temp))  # safetensors creates its file 0600
    fileio.write_text(tmp_path / "t.txt", "x")
    with fileio.atomic_dir(tmp_path / "d") as staging:
        save_file({"a": torch.zeros(2)}, str(staging / "inner.safetensors"))
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "d" / "inner.safetensors").stat().st_mode & 0o777 == 0o640


def test_checkpoints_follow_the_umask(tmp_path, tiny_checkpoint):
    from omnisep.states import load_checkpoint

    loaded = load_checkpoint(tiny_checkpoint)
    previous = os.umask(0o022)
    try:
        target = save_checkpoint(tmp_path / "ckpt", loaded.model, loaded.config["encoder"], loaded.bank)
    finally:
        os.umask(previous)
    assert target.stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in target.iterdir()} == {0o644}


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt(), fileio.Terminated()])
def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path, error):
    path = tmp_path / "report.md"
    path.write_text("old")
    with pytest.raises(type(error)):
        with fileio.atomic_path(path) as temp:
            temp.write_text("half")
            raise error
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_replacing_a_folder_keeps_the_old_one_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "frames"
    with fileio.atomic_dir(target) as staging:
        (staging / "1.txt").write_text("one")
    with pytest.raises(ValueError):
        with fileio.atomic_dir(target) as staging:
            (staging / "2.txt").write_text("two")
            raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["1.txt"]
    with fileio.atomic_dir(target) as staging:
        (staging / "2.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["2.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_only_partials_of_dead_processes_are_cleaned(tmp_path):
    path = tmp_path / "target.wav"
    dead = tmp_path / ".target.wav.omnisep-99999999-00ff00ff.part"
    old_style = tmp_path / ".target.wav.a1b2c3d4.part"
    mine = fileio.new_partial_file(path)  # this process is alive
    other = tmp_path / ".other.wav.omnisep-99999999-00ff00ff.part"
    unrelated = tmp_path / ".target.wav.notes.part"
    for p in (dead, old_style, other, unrelated):
        p.write_text("x")
    removed = fileio.clean_stale_partials(path)
    assert sorted(p.name for p in removed) == sorted([dead.name, old_style.name])
    assert mine.exists() and other.exists() and unrelated.exists()
    fileio.remove_live_partials()
    assert not mine.exists()


def test_os_refusals_become_one_sentence_naming_the_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OmniSepError, match=r"'.*a-file' is a file, not a folder"):
        with fileio.output_errors(blocker / "sub" / "out.txt"):
            fileio.write_text(blocker / "sub" / "out.txt", "x")
    sentences = {
        errno.ENOSPC: "no space left",
        errno.EACCES: "permission denied",
        errno.EROFS: "read-only",
        errno.ENAMETOOLONG: "too long",
    }
    for code, phrase in sentences.items():
        with pytest.raises(OmniSepError, match=phrase):
            with fileio.output_errors(tmp_path / "out.wav"):
                raise OSError(code, os.strerror(code))


def test_sigterm_raises_inside_the_block_and_the_old_handler_comes_back(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(fileio.Terminated):
        with fileio.terminate_as_exception():
            with fileio.atomic_path(tmp_path / "x.bin") as temp:
                temp.write_bytes(b"partial")
                os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before
    assert list(tmp_path.iterdir()) == []
    assert fileio.Terminated.exit_code == 143
