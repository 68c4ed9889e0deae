"""Manifests: the list of clips a corpus offers, one row per item.

A manifest is CSV (with a header) or JSON Lines (one object per line). Only
`id`, `audio` and `label` are required; every other column is optional, and
columns we do not know are kept in `ManifestItem.extra` so that a corpus recipe
can carry its own bookkeeping through a read/write round trip.

Relative file paths are resolved against the manifest's folder, so a corpus
folder can be moved or shared as a whole.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from omnisep import fileio
from omnisep.errors import OmniSepError, describe

REQUIRED_FIELDS = ("id", "audio", "label")
OPTIONAL_FIELDS = ("image", "video", "embedding", "split", "source", "package", "licence")
PATH_FIELDS = ("audio", "image", "video", "embedding")
KNOWN_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS


@dataclass
class ManifestItem:
    id: str
    audio: Path
    label: str
    image: Path | None = None
    video: Path | None = None
    embedding: Path | None = None
    split: str | None = None
    source: str | None = None
    package: str | None = None
    licence: str | None = None
    extra: dict = field(default_factory=dict)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise OmniSepError(f"Manifest {describe(path)} must end in .csv or .jsonl (got '{suffix or 'no suffix'}').")


def _item_from_row(row: dict, folder: Path, manifest: Path, line: int) -> ManifestItem:
    missing = [name for name in REQUIRED_FIELDS if not str(row.get(name) or "").strip()]
    if missing:
        raise OmniSepError(
            f"Manifest {describe(manifest)} line {line}: missing value for {', '.join(missing)}."
        )
    values = {}
    for name in KNOWN_FIELDS:
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            values[name] = None
            continue
        if not isinstance(value, str):
            raise OmniSepError(
                f"Manifest {describe(manifest)} line {line}: field '{name}' must be a string, got {type(value).__name__}."
            )
        value = value.strip()
        values[name] = (folder / value) if name in PATH_FIELDS else value
    # An empty CSV cell means "no value", as for the known fields.
    extra = {key: value for key, value in row.items() if key not in KNOWN_FIELDS and value not in (None, "")}
    return ManifestItem(extra=extra, **values)


def _rows_csv(path: Path):
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [name for name in REQUIRED_FIELDS if name not in header]
        if missing:
            raise OmniSepError(
                f"Manifest {describe(path)} has no column {', '.join(missing)} (its header is: {', '.join(header) or 'empty'})."
            )
        for row in reader:
            if None in row:  # more cells than header names
                raise OmniSepError(f"Manifest {describe(path)} line {reader.line_num}: more cells than header columns.")
            if not any((cell or "").strip() for cell in row.values()):
                continue
            yield reader.line_num, row


def _rows_jsonl(path: Path):
    with open(path, encoding="utf-8") as handle:
        for line_number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise OmniSepError(f"Manifest {describe(path)} line {line_number}: not valid JSON ({exc.msg}).") from None
            if not isinstance(row, dict):
                raise OmniSepError(f"Manifest {describe(path)} line {line_number}: expected a JSON object.")
            yield line_number, row


def read_manifest(path: str | os.PathLike) -> list[ManifestItem]:
    """Read a CSV or JSONL manifest; ids must be unique and at least one item present."""
    path = Path(path)
    kind = _format_of(path)
    if not path.is_file():
        raise OmniSepError(f"Manifest {describe(path)} does not exist.")
    folder = path.resolve().parent
    rows = _rows_csv(path) if kind == "csv" else _rows_jsonl(path)
    items: list[ManifestItem] = []
    first_line: dict[str, int] = {}
    try:
        for line, row in rows:
            item = _item_from_row(row, folder, path, line)
            if item.id in first_line:
                raise OmniSepError(
                    f"Manifest {describe(path)} line {line}: id '{item.id}' already used on line {first_line[item.id]}."
                )
            first_line[item.id] = line
            items.append(item)
    except UnicodeDecodeError:
        raise OmniSepError(f"Manifest {describe(path)} is not UTF-8 text.") from None
    except csv.Error as exc:
        raise OmniSepError(f"Manifest {describe(path)} is not valid CSV ({exc}).") from None
    if not items:
        raise OmniSepError(f"Manifest {describe(path)} lists no items.")
    return items


def _row_for_writing(item: ManifestItem, folder: Path) -> dict:
    row = {}
    for name in KNOWN_FIELDS:
        value = getattr(item, name)
        if value is None:
            continue
        if name in PATH_FIELDS:
            value = Path(value)
            try:
                value = value.resolve().relative_to(folder).as_posix()
            except ValueError:
                value = str(value.resolve())
        row[name] = str(value)
    row.update(item.extra)
    return row


def write_manifest(path: str | os.PathLike, items: Iterable[ManifestItem]) -> Path:
    """Write atomically; paths under the manifest's folder are stored relative to it."""
    path = Path(path)
    kind = _format_of(path)
    folder = path.resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    rows = [_row_for_writing(item, folder) for item in items]
    with fileio.output_errors(path), fileio.atomic_path(path) as temp, open(
        temp, "w", newline="", encoding="utf-8"
    ) as handle:
        if True:
            if kind == "jsonl":
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                columns = list(REQUIRED_FIELDS)
                for row in rows:
                    columns += [name for name in row if name not in columns]
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
    return path
