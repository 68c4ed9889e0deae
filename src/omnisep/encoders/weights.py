"""Where encoder weights live, how they are written, and their hashes.

Only the documented cache folder (``$OMNISEP_CACHE``, default
``~/.cache/omnisep``) is written without being named by the user.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from omnisep import fileio

HASH_INDEX = "weights-hashes.json"


def cache_root() -> Path:
    return Path(os.environ.get("OMNISEP_CACHE") or Path.home() / ".cache" / "omnisep")


def save_safetensors_atomic(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write to a temporary file in the same folder, then rename: never a half-written file under the final name."""
    path = Path(path)
    with fileio.atomic_path(path) as temporary:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(temporary), metadata=metadata)
    return path


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    return fileio.write_json(path, data, fsync=False, indent=1, sort_keys=True)


def cached_file_hash(path: str | os.PathLike, compute: Callable[[], str], tag: str = "") -> str:
    """Remember an expensive hash of a big file, keyed by its path, size and modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{tag}"
    index_path = cache_root() / HASH_INDEX
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = {}
    if key in index:
        return index[key]
    value = compute()
    index[key] = value
    try:
        write_json_atomic(index_path, index)
    except OSError:
        pass  # a read-only cache only costs the hash again next time
    return value
