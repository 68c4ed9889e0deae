"""Read synonyms and definitions from WordNet 3.0's database files (Debian ``wordnet-base``), at build time.

Only ``index.<pos>`` and ``data.<pos>`` are read (the format of wndb(5WN)):
an index line lists a lemma's synset offsets in sense order; the data line
at that byte offset holds the synset's words and, after ``|``, its gloss.
WordNet 3.0 licence (Princeton University), recorded in docs/encoders.md.
"""

from __future__ import annotations

from pathlib import Path

POS_FILES = {"n": "noun", "v": "verb"}


class WordNet:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._index: dict[str, dict[str, list[int]]] = {}

    def _offsets(self, lemma: str, pos: str) -> list[int]:
        if pos not in self._index:
            table = {}
            with open(self.folder / f"index.{POS_FILES[pos]}", encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith(" "):
                        continue
                    fields = line.split()
                    count = int(fields[2])
                    pointers = int(fields[3])
                    table[fields[0]] = [int(o) for o in fields[4 + pointers + 2 :][:count]]
            self._index[pos] = table
        return self._index[pos].get(lemma.replace(" ", "_").lower(), [])

    def synset(self, lemma: str, pos: str = "n", sense: int = 1) -> tuple[list[str], str]:
        """(words, gloss) of ``lemma``'s ``sense``-th sense (1-based)."""
        offsets = self._offsets(lemma, pos)
        if len(offsets) < sense:
            raise KeyError(f"{lemma}#{pos}{sense}")
        with open(self.folder / f"data.{POS_FILES[pos]}", "rb") as handle:
            handle.seek(offsets[sense - 1])
            line = handle.readline().decode("utf-8")
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        count = int(fields[3], 16)
        words = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
        words = [w.split("(")[0] for w in words]  # adjective markers such as "(a)"
        return words, gloss.strip()
