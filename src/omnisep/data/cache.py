"""Precomputed query embeddings: safetensors shards plus a small JSON index.

The encoder is frozen, so each item's text/image/audio embedding is computed
once (OmniSep precomputes its ImageBind features too) and read back during
training by id.

Layout of a cache folder::

    index.json                  format, encoder identity, modalities, finished shards
    shards/shard-00000.safetensors
        "{modality}"            float32 [n, D]   (zeros where absent)
        "{modality}.present"    uint8   [n]
        metadata "ids"          JSON list of the n item ids, in row order

Building streams over the manifest one shard at a time (bounded memory).
A shard is written to a temporary file and renamed, and only then listed in
the index (also replaced atomically): a run killed at any moment leaves a
valid cache, and the next run skips every item of a listed shard.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open

from omnisep.encoders.weights import save_safetensors_atomic, write_json_atomic
from omnisep.errors import OmniSepError, describe
from omnisep.modalities import BY_NAME, MODALITIES, check as check_modalities

CACHE_FORMAT = "omnisep-embedding-cache"
CACHE_FORMAT_VERSION = 1
INDEX_FILE = "index.json"
SHARD_FOLDER = "shards"
DEFAULT_SHARD_SIZE = 256
OPEN_SHARDS = 16


def _read_index(folder: Path) -> dict | None:
    path = folder / INDEX_FILE
    if not path.exists():
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OmniSepError(f"Embedding cache index {describe(path)} is damaged ({type(exc).__name__}).") from None
    if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
        raise OmniSepError(f"{describe(folder)} is not an omnisep embedding cache (its {INDEX_FILE} is foreign).")
    if index.get("format_version") != CACHE_FORMAT_VERSION:
        raise OmniSepError(f"Embedding cache {describe(folder)} has format version {index.get('format_version')}, expected {CACHE_FORMAT_VERSION}.")
    return index


def _same_encoder(recorded: dict, identity: dict) -> bool:
    return all(recorded.get(key) == identity.get(key) for key in ("name", "version", "weights_hash", "dim"))


def _compatible_encoder(recorded: dict, identity: dict) -> bool:
    """Reading accepts a compatible heads version (same text and audio, image in the same anchor space)."""
    from omnisep.encoders.base import identities_compatible

    return identities_compatible(recorded, identity)


def _encoder_mismatch(folder: Path, recorded: dict, identity: dict) -> OmniSepError:
    return OmniSepError(
        f"Embedding cache {describe(folder)} was made with encoder '{recorded.get('name')}' "
        f"(version {recorded.get('version')}, weights {str(recorded.get('weights_hash'))[:12]}), not with "
        f"'{identity.get('name')}' (version {identity.get('version')}, weights {str(identity.get('weights_hash'))[:12]}): "
        "use another output folder."
    )


class EmbeddingCache:
    """Random access by item id; shards are memory-mapped and opened on demand."""

    def __init__(self, path: str | os.PathLike, encoder_identity: dict | None = None):
        self.path = Path(path)
        parts = _cache_parts(self.path)
        if not parts:
            raise OmniSepError(f"Embedding cache {describe(self.path)} does not exist (no {INDEX_FILE}).")
        index = parts[0][1]
        self.encoder = index["encoder"]
        self.modalities = tuple(index["modalities"])
        for folder, other in parts[1:]:
            if not _same_encoder(other["encoder"], self.encoder) or tuple(other["modalities"]) != self.modalities:
                raise OmniSepError(
                    f"Embedding cache {describe(self.path)}: part {describe(folder)} was made with another "
                    "encoder or other modalities than the first part."
                )
        if encoder_identity is not None and not _compatible_encoder(self.encoder, encoder_identity):
            raise _encoder_mismatch(self.path, self.encoder, encoder_identity)
        self.dim = int(self.encoder["dim"])
        self._shards = [folder / SHARD_FOLDER / name for folder, part in parts for name in part["shards"]]
        self._location: dict[str, tuple[int, int]] = {}
        for number, shard in enumerate(self._shards):
            for row, item_id in enumerate(self._shard_ids(shard)):
                self._location[item_id] = (number, row)
        self._open: OrderedDict[int, object] = OrderedDict()

    @staticmethod
    def _shard_ids(shard: Path) -> list[str]:
        try:
            with safe_open(str(shard), framework="pt") as handle:
                return json.loads(handle.metadata()["ids"])
        except (OSError, SafetensorError, KeyError, ValueError, TypeError) as exc:
            raise OmniSepError(f"Embedding cache shard {describe(shard)} is missing or damaged ({type(exc).__name__}).") from None

    def _handle(self, number: int):
        handle = self._open.pop(number, None)
        if handle is None:
            handle = safe_open(str(self._shards[number]), framework="pt")
            if len(self._open) >= OPEN_SHARDS:
                self._open.popitem(last=False)
        self._open[number] = handle
        return handle

    def __len__(self) -> int:
        return len(self._location)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._location

    def ids(self) -> list[str]:
        return list(self._location)

    def _shard_row(self, item_id: str):
        try:
            number, row = self._location[item_id]
        except KeyError:
            raise OmniSepError(f"Item '{item_id}' is not in the embedding cache {describe(self.path)}.") from None
        return self._handle(number), row

    def get(self, item_id: str) -> dict[str, torch.Tensor | None]:
        """``{"text": Tensor[D] | None, "image": ..., "audio": ...}`` (None: not computed or not available)."""
        handle, row = self._shard_row(item_id)
        result: dict[str, torch.Tensor | None] = {modality: None for modality in MODALITIES}
        for modality in self.modalities:
            if handle.get_slice(f"{modality}.present")[row : row + 1].item():
                result[modality] = handle.get_slice(modality)[row : row + 1][0].clone()
        return result

    def present(self, item_id: str) -> dict[str, bool]:
        """Which modalities an item has, without reading its vectors."""
        handle, row = self._shard_row(item_id)
        return {
            modality: modality in self.modalities and bool(handle.get_slice(f"{modality}.present")[row : row + 1].item())
            for modality in MODALITIES
        }


# -- building --------------------------------------------------------------------------------


RANKS_FOLDER = "ranks"


def rank_folder(output: str | os.PathLike, rank: int, world_size: int) -> Path:
    """Where one process of a sharded ``omnisep embed`` writes: a complete cache of its own."""
    return Path(output) / RANKS_FOLDER / f"rank-{rank:03d}-of-{world_size:03d}"


def _cache_parts(path: Path) -> list[tuple[Path, dict]]:
    """The cache at ``path`` and, for a sharded build, every rank's part below it."""
    parts = []
    index = _read_index(path)
    if index is not None:
        parts.append((path, index))
    ranks = path / RANKS_FOLDER
    if ranks.is_dir():
        for folder in sorted(ranks.iterdir()):
            part = _read_index(folder) if folder.is_dir() else None
            if part is not None:
                parts.append((folder, part))
    return parts


def item_inputs(item, modality: str) -> list | None:
    """What a manifest item's ``modality`` query is embedded from, or None when it has none.

    text: its label; audio: its clip; image: its picture, or (OmniSep's training
    image query) a video's 1 fps frames at centre-1, centre, centre+1, whose
    embeddings are averaged (``Modality.pooled``).
    """
    if modality == "text":
        return [item.label]
    if modality == "audio":
        return [item.audio]
    if modality == "image":
        from omnisep.images import centre_frames, load_image, video_frames

        if getattr(item, "image", None):
            return [load_image(item.image)]
        if getattr(item, "video", None):
            return centre_frames(video_frames(item.video, fps=1))
        return None
    raise ValueError(f"no manifest field holds {modality!r} queries")


def _embed_chunk(encoder, items: list, modalities: Sequence[str], batch_size: int, on_batch) -> dict[str, torch.Tensor]:
    """One shard's tensors. Buffers are numpy so that tracemalloc sees them (the memory test relies on it)."""
    count = len(items)
    vectors = {m: np.zeros((count, encoder.dim), np.float32) for m in modalities}
    present = {m: np.zeros(count, np.uint8) for m in modalities}
    for start in range(0, count, batch_size):
        batch = items[start : start + batch_size]
        for modality in modalities:
            owners, inputs = [], []
            for row, item in enumerate(batch, start=start):
                found = item_inputs(item, modality)
                if found:
                    owners.extend([row] * len(found))
                    inputs.extend(found)
            if not inputs:
                continue
            embeddings = encoder.embed(modality, inputs)
            if BY_NAME[modality].pooled:  # several inputs per item: their mean, normalised
                owner_index = torch.tensor(owners)
                for row in sorted(set(owners)):
                    vectors[modality][row] = F.normalize(embeddings[owner_index == row].mean(0), dim=0).numpy()
                    present[modality][row] = 1
            else:
                vectors[modality][owners] = embeddings.numpy()
                present[modality][owners] = 1
        on_batch(len(batch))
    tensors = {}
    for modality in modalities:
        tensors[modality] = torch.from_numpy(vectors[modality])
        tensors[f"{modality}.present"] = torch.from_numpy(present[modality])
    return tensors


def _chunks(items: Iterable, size: int):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build_cache(
    items: Iterable,
    encoder,
    output: str | os.PathLike,
    modalities: Sequence[str] = MODALITIES,
    batch_size: int = 32,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = False,
    total: int | None = None,
) -> dict:
    """Embed every item not yet in the cache at ``output``; returns counts ``{"done", "skipped", "shards"}``.

    ``items`` is any iterable of manifest items (``id``, ``label``, ``audio``,
    ``image``, ``video``) and is consumed lazily. A cache made by another
    encoder, or for other modalities, is refused.
    """
    output = Path(output)
    modalities = check_modalities(modalities)
    if output.exists() and not output.is_dir():
        raise OmniSepError(f"Embedding cache {describe(output)} is a file, not a folder.")
    identity = encoder.identity()
    index = _read_index(output)
    if index is None:
        index = {
            "format": CACHE_FORMAT,
            "format_version": CACHE_FORMAT_VERSION,
            "encoder": identity,
            "modalities": list(modalities),
            "shards": [],
        }
    else:
        if not _same_encoder(index["encoder"], identity):
            raise _encoder_mismatch(output, index["encoder"], identity)
        if tuple(index["modalities"]) != modalities:
            raise OmniSepError(
                f"Embedding cache {describe(output)} holds {', '.join(index['modalities'])} embeddings, "
                f"not {', '.join(modalities)}: use another output folder."
            )
    done: set[str] = set()
    for name in index["shards"]:
        done.update(EmbeddingCache._shard_ids(output / SHARD_FOLDER / name))

    from tqdm import tqdm

    bar = tqdm(total=total, initial=0, unit="item", desc="embedding", disable=not progress)
    counts = {"done": 0, "skipped": 0, "shards": 0}

    def pending():
        for item in items:
            if item.id in done:
                counts["skipped"] += 1
                bar.update(1)
                continue
            yield item

    try:
        for chunk in _chunks(pending(), shard_size):
            tensors = _embed_chunk(encoder, chunk, modalities, batch_size, bar.update)
            name = f"shard-{len(index['shards']):05d}.safetensors"
            ids = [item.id for item in chunk]
            save_safetensors_atomic(tensors, output / SHARD_FOLDER / name, {"ids": json.dumps(ids)})
            index["shards"].append(name)
            write_json_atomic(output / INDEX_FILE, index)
            done.update(ids)
            counts["done"] += len(chunk)
            counts["shards"] += 1
    finally:
        bar.close()
    if not index["shards"]:
        write_json_atomic(output / INDEX_FILE, index)  # an empty but valid cache
    return counts
