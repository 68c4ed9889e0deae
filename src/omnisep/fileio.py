"""Atomic writes: a file or folder appears under its final name complete, or not at all.

Every writer in omnisep goes through here, so that one place decides how a
partial file is named, what permissions a finished file gets and how the
partial files of an interrupted run are found again:

* a partial file is a hidden sibling of its target,
  ``.<name>.omnisep-<pid>-<random>.part`` (folders: ``...part`` too), created
  with mode 0666 / 0777 *minus the umask*, like any file the user's tools make
  (``tempfile.mkstemp`` would give 0600 / 0700 whatever the umask);
* it is moved into place with one ``os.replace`` (same folder, same file
  system), after an ``fsync`` where a half-written file would be costly;
* on an exception (including ``KeyboardInterrupt`` and :class:`Terminated`) the partial file is
  removed; partial files still alive when the process ends normally are
  removed by :func:`remove_live_partials` (the CLI calls it);
  :func:`terminate_as_exception` makes SIGTERM such an exception;
* a SIGKILL cannot be caught: :func:`clean_stale_partials` removes the
  partial files of a target left by processes that no longer run, so a rerun
  starts clean.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omnisep.errors import OmniSepError, describe

PART_SUFFIX = ".part"
_LIVE: set[Path] = set()  # partial files and folders this process has not finished yet
_LIVE_LOCK = threading.Lock()


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so that cleanup runs as for Ctrl-C (exit code 143)."""

    exit_code = 128 + signal.SIGTERM


def _tag() -> str:
    return f"omnisep-{os.getpid()}-{secrets.token_hex(4)}"


def partial_name(path: str | os.PathLike) -> Path:
    """A fresh hidden partial name beside ``path`` (not created)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_tag()}{PART_SUFFIX}")


def _register(path: Path) -> None:
    with _LIVE_LOCK:
        _LIVE.add(path)


def _unregister(path: Path) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(path)


def new_partial_file(path: str | os.PathLike) -> Path:
    """Create an empty partial file for ``path`` (mode 0666 minus the umask) and return its name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temp = partial_name(path)
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue
        _register(temp)
        return temp


def new_partial_dir(path: str | os.PathLike) -> Path:
    """Create an empty partial folder for ``path`` (mode 0777 minus the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temp = partial_name(path)
        try:
            os.mkdir(temp, 0o777)
        except FileExistsError:  # pragma: no cover
            continue
        _register(temp)
        return temp


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _LIVE_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def commit(temp: str | os.PathLike, path: str | os.PathLike, fsync: bool = False) -> Path:
    """Move a finished partial file (or folder) onto ``path`` in one rename, with the umask's permissions.

    The mode is set again here because some writers replace the partial file
    with one of their own (safetensors creates its files 0600).
    """
    temp, path = Path(temp), Path(path)
    if fsync and temp.is_file():
        fsync_file(temp)
    os.chmod(temp, (0o777 if temp.is_dir() else 0o666) & ~current_umask())
    if temp.is_dir() and path.exists():
        _swap_dir(temp, path)
    else:
        os.replace(temp, path)
    _unregister(temp)
    return path


def discard(temp: str | os.PathLike) -> None:
    """Remove a partial file or folder (never the final name)."""
    temp = Path(temp)
    if temp.is_dir() and not temp.is_symlink():
        shutil.rmtree(temp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    _unregister(temp)


def _swap_dir(staging: Path, target: Path) -> None:
    """Replace a folder: the old one moves aside first and is deleted last (restored on failure)."""
    retired = partial_name(target)
    os.replace(target, retired)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """``with atomic_path(out) as temp: write(temp)``: ``out`` appears only if the block succeeds."""
    temp = new_partial_file(path)
    try:
        yield temp
        commit(temp, path, fsync=fsync)
    except BaseException:
        discard(temp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_dir(out) as staging: fill(staging)``: the folder ``out`` is replaced in one step."""
    staging = new_partial_dir(path)
    try:
        yield staging
        mask = current_umask()
        for child in staging.rglob("*"):
            if child.is_file():
                fsync_file(child)
                os.chmod(child, 0o666 & ~mask)  # safetensors makes its files 0600
        commit(staging, path)
    except BaseException:
        discard(staging)
        raise


def write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    with atomic_path(path, fsync=fsync) as temp:
        temp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> Path:
    if not isinstance(text, str):
        raise TypeError(f"write_text needs a str, got {type(text).__name__}")
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_json(path: str | os.PathLike, data: Any, fsync: bool = True, **dump_options) -> Path:
    dump_options.setdefault("indent", 1)
    return write_text(path, json.dumps(data, **dump_options) + "\n", fsync=fsync)


# -- errors ----------------------------------------------------------------------------------

def _blocking_file(path: Path) -> Path | None:
    """The first ancestor of ``path`` that exists but is not a folder (why a mkdir fails with ENOTDIR)."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def os_error_sentence(path: str | os.PathLike, error: OSError) -> str:
    """One sentence naming an output and why the system refused to write it."""
    path = Path(path)
    code = error.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"{describe(path)} could not be written: no space left on the device (the disk or quota is full)."
    if code == errno.ENOTDIR or isinstance(error, NotADirectoryError):
        blocker = _blocking_file(path)
        where = f"{describe(blocker)} is a file, not a folder" if blocker else "a part of its folder path is a file"
        return f"{describe(path)} cannot be created: {where}; choose another output folder."
    if code in (errno.EACCES, errno.EPERM):
        return f"{describe(path)} could not be written: permission denied."
    if code == errno.EROFS:
        return f"{describe(path)} could not be written: the file system is read-only."
    if code == errno.ENAMETOOLONG:
        return f"{describe(path)} could not be written: the name is too long for the file system."
    if code == errno.EISDIR or isinstance(error, IsADirectoryError):
        return f"{describe(path)} is a folder, so no file can be written there."
    return f"{describe(path)} could not be written ({error.strerror or error})."


@contextlib.contextmanager
def output_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn the operating system's refusals while writing ``path`` into an :class:`OmniSepError`."""
    try:
        yield
    except OSError as error:
        raise OmniSepError(os_error_sentence(path, error)) from None


# -- leftovers --------------------------------------------------------------------------------

_PART_RE = re.compile(r"\.omnisep-(\d+)-[0-9a-f]+\.part$")


def _owner_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as error:  # pragma: no cover
        return error.errno != errno.ESRCH
    return True


def clean_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Remove partial files of ``path`` left by runs that died (SIGKILL, power loss); returns them.

    Partials of a live process (a concurrent run writing the same output) are
    left alone; so are files that do not follow the partial naming. Also
    removes the ``.<name>.XXXXXXXX.part`` names older omnisep versions used.
    """
    path = Path(path)
    folder = path.parent
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir()) if folder.is_dir() else []
    except OSError:  # best effort: an unreadable folder is reported when it is written to
        return removed
    prefix = f".{path.name}."
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or not name.endswith(PART_SUFFIX):
            continue
        middle = name[len(prefix) : -len(PART_SUFFIX)]
        match = _PART_RE.search(name)
        if match is not None:
            if _owner_alive(int(match.group(1))):
                continue
        elif not re.fullmatch(r"[A-Za-z0-9_]{8}", middle):  # mkstemp's names (earlier versions)
            continue
        try:
            discard(entry)
        except OSError:
            continue
        removed.append(entry)
    return removed


def remove_live_partials() -> None:
    """Remove every partial file this process still holds (called on the way out)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for temp in live:
        discard(temp)


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread, so cleanup runs.

    (SIGINT already raises ``KeyboardInterrupt``.) The previous handler comes
    back afterwards; outside the main thread nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
