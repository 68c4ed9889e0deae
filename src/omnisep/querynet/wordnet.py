"""Read synonyms and definitions from WordNet 3.0's database files (Debian ``wordnet-base``), at build time.

Only ``index.<pos>`` and ``data.<pos>`` are read (the format of wndb(5WN)):
an index line lists a lemma's synset offsets in sense order; the data line
at that byte offset holds the synset's words, its pointers to other synsets
(kinds: hyponyms ``~``; derived words: ``+``) and, after ``|``, its gloss.
WordNet 3.0 licence (Princeton University), recorded in docs/encoders.md.
"""

from __future__ import annotations

from pathlib import Path

POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}


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

    def _line(self, offset: int, pos: str) -> tuple[list[str], list[tuple[str, int, str, int]], str]:
        """The synset at ``offset``: its words, its pointers ``(symbol, offset, pos, target word or 0)`` and its gloss."""
        with open(self.folder / f"data.{POS_FILES[pos]}", "rb") as handle:
            handle.seek(offset)
            line = handle.readline().decode("utf-8")
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        count = int(fields[3], 16)
        words = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
        words = [w.split("(")[0] for w in words]  # adjective markers such as "(a)"
        at = 4 + 2 * count
        pointers = []
        for i in range(int(fields[at])):
            symbol, target, target_pos, source_target = fields[at + 1 + 4 * i : at + 5 + 4 * i]
            pointers.append((symbol, int(target), target_pos, int(source_target[2:], 16)))
        return words, pointers, gloss.strip()

    def synset(self, lemma: str, pos: str = "n", sense: int = 1) -> tuple[list[str], str]:
        """(words, gloss) of ``lemma``'s ``sense``-th sense (1-based)."""
        words, _, gloss = self._line(self._sense_offset(lemma, pos, sense), pos)
        return words, gloss

    def _sense_offset(self, lemma: str, pos: str, sense: int) -> int:
        offsets = self._offsets(lemma, pos)
        if len(offsets) < sense:
            raise KeyError(f"{lemma}#{pos}{sense}")
        return offsets[sense - 1]

    def kinds(self, lemma: str, pos: str = "n", sense: int = 1, depth: int = 1) -> list[str]:
        """The words of the sense's hyponyms, ``depth`` levels down: a mare and a pony are kinds of horse. Instances
        (proper names: the Amazon is an instance of a river) are not kinds of a sound. Each word once, nearest level
        first."""
        found: list[str] = []
        level = [self._sense_offset(lemma, pos, sense)]
        for _ in range(depth):
            below = []
            for offset in level:
                for symbol, target, target_pos, _ in self._line(offset, pos)[1]:
                    if symbol == "~" and target_pos == pos:
                        below.append(target)
            for offset in below:
                found += [w for w in self._line(offset, pos)[0] if w not in found]
            level = below
        return found

    def derived(self, lemma: str, pos: str = "n", sense: int = 1) -> list[str]:
        """Words derived from the sense's words (``+`` pointers): a cellist from a cello, a neigh from to neigh."""
        _, pointers, _ = self._line(self._sense_offset(lemma, pos, sense), pos)
        found: list[str] = []
        for symbol, target, target_pos, word in pointers:
            if symbol == "+" and word:
                found_word = self._line(target, target_pos)[0][word - 1]
                if found_word not in found:
                    found.append(found_word)
        return found
