"""Read files out of a Qt resource bundle (.rcc), the container GCompris ships its sounds in.

Format (Qt's rcc, versions 1-3): a 20-byte header ("qres", version, and the
offsets of the tree, data and names sections); tree nodes of 14 bytes (22 from
version 2, which adds a modification time); names stored as length + hash +
UTF-16BE; data entries as a 4-byte length and the bytes, zlib-compressed
(with a 4-byte length prefix) when the node's flag 1 is set.
"""

from __future__ import annotations

import os
import struct
import zlib

from omnisep.errors import OmniSepError

COMPRESSED, DIRECTORY, COMPRESSED_ZSTD = 1, 2, 4


def read_rcc(path: str | os.PathLike) -> dict[str, bytes]:
    """Every file in the bundle, keyed by its resource path ('/a/b/c.ogg')."""
    with open(path, "rb") as handle:
        blob = handle.read()
    if len(blob) < 20 or blob[:4] != b"qres":
        raise OmniSepError(f"'{os.fspath(path)}' is not a Qt resource bundle.")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node_size = 22 if version >= 2 else 14

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset : names + offset + 2])
        start = names + offset + 6  # skip the length and the 4-byte hash
        return blob[start : start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}
    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        node = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", blob[node : node + 6])
        name = name_at(name_offset) if index else ""
        if flags & DIRECTORY:
            count, first = struct.unpack(">II", blob[node + 6 : node + 14])
            stack.extend((first + i, f"{prefix}{name}/") for i in range(count))
            continue
        (offset,) = struct.unpack(">I", blob[node + 10 : node + 14])
        (size,) = struct.unpack(">I", blob[data + offset : data + offset + 4])
        payload = blob[data + offset + 4 : data + offset + 4 + size]
        if flags & COMPRESSED_ZSTD:
            continue  # not used by GCompris' sound bundles; no zstd dependency for it
        if flags & COMPRESSED:
            payload = zlib.decompress(payload[4:])
        files[f"{prefix}{name}"] = payload
    return files
