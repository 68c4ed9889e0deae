"""Mixture lists: the fixed validation and test mixtures, and the test-set loader.

A mixture list is a JSONL file, one mixture per line, over the items of a
manifest (by default ``manifest.jsonl`` beside it)::

    {"id": "mix-test-00000", "target": "dog-0013", "interferers": ["violin-0004"], "seed": 3794526311}

* ``target``: the item id of the source to separate;
* ``interferers``: the item ids mixed with it (the sources are summed, each
  divided by their number);
* ``id`` (optional): the mixture's name in score files; by default
  ``target+interferer+...``;
* ``seed`` (optional, recorded for provenance and never read back): the
  entropy given to ``numpy.random.default_rng`` when the row's interferers
  were drawn, so ``default_rng(seed)`` repeats that draw. ``omnisep corpus
  build`` writes one integer per row, ``omnisep recipes prepare`` the pair
  ``[recipe seed, row index]``. Lists written by ``omnisep recipes`` before
  this was settled hold the bare row index there instead.

Both writers (``data/corpus/splits.make_mixtures``, ``data/recipes/engine.draw_mixtures``)
build :class:`MixtureSpec` rows and write them with :meth:`MixtureList.write`;
training (validation mixtures) and evaluation (test sets) read them here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from omnisep import fileio
from omnisep.errors import OmniSepError, describe

ROW_SHAPE = '{"target": id, "interferers": [id, ...]}'


@dataclasses.dataclass(frozen=True)
class MixtureSpec:
    """One fixed mixture: a target item and its interferers, by item id."""

    target: str
    interferers: tuple[str, ...]
    id: str | None = None
    seed: int | tuple[int, ...] | None = None

    @property
    def item_ids(self) -> tuple[str, ...]:
        """Target first, then the interferers."""
        return (self.target, *self.interferers)

    @property
    def name(self) -> str:
        """The ``id``, or ``target+interferer+...`` for rows that have none."""
        return self.id if self.id is not None else "+".join(self.item_ids)

    def to_row(self) -> dict:
        row: dict = {}
        if self.id is not None:
            row["id"] = self.id
        row["target"] = self.target
        row["interferers"] = list(self.interferers)
        if self.seed is not None:
            row["seed"] = list(self.seed) if isinstance(self.seed, tuple) else self.seed
        return row

    @classmethod
    def from_row(cls, row) -> "MixtureSpec":
        """Raises KeyError/TypeError/ValueError for a row of another shape (the reader names the line)."""
        if not isinstance(row, dict) or not isinstance(row["interferers"], list):
            raise TypeError("not a mixture row")
        seed = row.get("seed")
        return cls(
            target=row["target"],
            interferers=tuple(row["interferers"]),
            id=None if row.get("id") is None else str(row["id"]),
            seed=tuple(seed) if isinstance(seed, list) else seed,
        )


class MixtureList(Sequence):
    """The rows of one mixture-list file, in file order."""

    def __init__(self, mixtures: Sequence[MixtureSpec], path: Path | None = None, lines: Sequence[int] | None = None):
        self.mixtures = list(mixtures)
        self.path = path
        self._lines = list(lines) if lines is not None else None  # file line of each row, for messages

    def __len__(self) -> int:
        return len(self.mixtures)

    def __getitem__(self, index):
        return self.mixtures[index]

    def __iter__(self) -> Iterator[MixtureSpec]:
        return iter(self.mixtures)

    @classmethod
    def read(cls, path: str | os.PathLike, what: str = "Mixture list") -> "MixtureList":
        """Read and check the shape of every row; ``what`` names the file in errors ("Test set", ...)."""
        path = Path(path)
        if not path.is_file():
            raise OmniSepError(f"{what} {describe(path)} does not exist.")
        mixtures, lines = [], []
        with open(path, encoding="utf-8") as handle:
            for line_number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                lines.append(line_number)
                try:
                    mixtures.append(MixtureSpec.from_row(json.loads(text)))
                except (ValueError, KeyError, TypeError):
                    raise OmniSepError(f"{what} {describe(path)} line {line_number}: expected {ROW_SHAPE}.") from None
        if not mixtures:
            raise OmniSepError(f"{what} {describe(path)} lists no mixtures.")
        return cls(mixtures, path, lines)

    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically (omnisep.fileio: a partial file in the same folder, then a rename)."""
        text = "".join(json.dumps(spec.to_row(), ensure_ascii=False) + "\n" for spec in self.mixtures)
        return fileio.write_text(path, text)

    def indices(self, items: Sequence, num_sources: int, what: str = "Mixture list") -> list[list[int]]:
        """Each row as manifest indices (target first); every row must mix ``num_sources`` known items."""
        index_of = {item.id: i for i, item in enumerate(items)}
        where = describe(self.path) if self.path is not None else "(in memory)"
        out = []
        for number, spec in enumerate(self.mixtures):
            ids = spec.item_ids
            line = f"{what} {where} " + (f"line {self._lines[number]}" if self._lines else f"row {number + 1}")
            if len(ids) != num_sources:
                raise OmniSepError(f"{line}: {len(ids)} sources, but the run mixes {num_sources}.")
            unknown = [str(i) for i in ids if i not in index_of]
            if unknown:
                raise OmniSepError(f"{line}: unknown item id {', '.join(unknown)}.")
            indices = [index_of[i] for i in ids]
            # A recording mixed with itself cannot be scored (BSS Eval's references become
            # linearly dependent) and separates nothing: refuse it here, by line.
            audios = [str(items[i].audio) for i in indices]
            repeated = next((ids[n] for n in range(len(ids)) if ids[n] in ids[:n] or audios[n] in audios[:n]), None)
            if repeated is not None:
                raise OmniSepError(
                    f"{line}: item {repeated!r} (or its recording) is used twice in one mixture; "
                    "the sources of a mixture must be different recordings."
                )
            out.append(indices)
        return out


def read_mixture_list(path: str | os.PathLike, items: Sequence, num_sources: int) -> list[list[int]]:
    """Fixed validation mixtures as manifest indices (target first)."""
    return MixtureList.read(path).indices(items, num_sources)


# ----------------------------------------------------------------------------- test sets


@dataclasses.dataclass
class TestSet:
    """A fixed list of mixtures over the items of a manifest."""

    __test__ = False  # not a pytest test class

    manifest_path: Path
    mixture_path: Path
    items: list  # ManifestItem
    mixtures: list[list[int]]  # item indices: target first, then interferers
    mixture_ids: list[str]


def load_test_set(mixture_path: str | os.PathLike, manifest_path: str | os.PathLike | None = None) -> TestSet:
    """A mixture list and its manifest, for evaluation.

    The manifest defaults to ``manifest.jsonl`` beside the mixture list, as the
    corpus and dataset recipes write them. Every row mixes as many sources as
    the first; every audio file a mixture needs must exist: a missing one is
    reported before any work starts.
    """
    from omnisep.data.manifest import read_manifest

    mixture_path = Path(mixture_path)
    if not mixture_path.is_file():
        raise OmniSepError(f"Test set {describe(mixture_path)} does not exist.")
    if manifest_path is None:
        manifest_path = mixture_path.parent / "manifest.jsonl"
        if not manifest_path.is_file():
            raise OmniSepError(
                f"Test set {describe(mixture_path)} has no manifest.jsonl beside it; name the manifest with --manifest."
            )
    manifest_path = Path(manifest_path)
    items = read_manifest(manifest_path)
    listed = MixtureList.read(mixture_path, what="Test set")
    mixtures = listed.indices(items, len(listed[0].item_ids), what="Test set")
    missing = sorted({str(items[i].audio) for row in mixtures for i in row if not Path(items[i].audio).is_file()})
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise OmniSepError(
            f"Test set {describe(mixture_path)} needs audio files that do not exist: {describe(missing[0])}{more}."
        )
    return TestSet(manifest_path, mixture_path, items, mixtures, [spec.name for spec in listed])
