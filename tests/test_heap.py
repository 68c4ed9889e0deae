import ctypes
import subprocess
import sys

import pytest

from omnisep import heap


def glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "gnu_get_libc_version")
    except OSError:
        return False


@pytest.mark.skipif(not glibc(), reason="mallopt thresholds are a glibc feature")
def test_thresholds_are_raised_on_glibc():
    # in a fresh interpreter, so this test process keeps its allocator as it was
    code = "from omnisep.heap import keep_freed_memory; print(keep_freed_memory())"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def test_without_mallopt_nothing_changes(monkeypatch):
    def no_libc(*args, **kwargs):
        raise OSError("no C library here")

    monkeypatch.setattr(heap.ctypes, "CDLL", no_libc)
    assert heap.keep_freed_memory() is False
    monkeypatch.setattr(heap.sys, "platform", "darwin")
    assert heap.keep_freed_memory() is False


def test_the_cli_keeps_freed_memory(monkeypatch):
    from omnisep import cli

    calls = []
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main(["--version"]) == 0
    assert calls == [1]
