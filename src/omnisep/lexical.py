"""Word overlap between a description and each class's Query-Aug entries (BM25 over stemmed words).

The sentence model places "mallards making a racket" near whatever sounds
busy; the bank's entries for "duck quacking" contain "mallard". A lexical
score catches the words a description shares with a class's names, synonyms,
WordNet glosses and descriptions, where the embedding misses them; Query-Aug
adds it to the embedding score (``ClassMatcher(lexical={"weight": ...})``).

Each class's entries together are one document. BM25 (Robertson and Zaragoza's
form, with Lucene's non-negative idf ``log(1 + (N - n + 0.5) / (n + 0.5))``);
words are lower-cased, stop words dropped and stemmed with the Snowball
English stemmer. Scoring can leave given entries out of their class's document
(leave-one-out calibration), which is why this is not ``rank_bm25``: that
library cannot take one entry back out of a document.

A class's words-only entries (WordNet's kinds: "mare", "bullfrog", "licorice
stick") are names, not context: BM25 weighs "mare" in a long document of
horse breeds no more than "night" in the owl's, so :class:`MentionIndex`
also says which classes a text names by one of those phrases, whole.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import torch

K1, B = 1.2, 0.75
# Function words, and words every sound description shares ("sound", "noise", "making"): they say nothing of the class.
STOP_WORDS = frozenset(
    "a an the of in on at to and or is are was were be been being am my our your his her their its it this that these "
    "those i we you he she they me us them with from by for as some someone something somebody thing things very really "
    "just like into out up down over off all any one two who what when where which while going go goes get gets got "
    "there here kind sort sound sounds sounding noise noises making make makes made".split()
)
_WORD = re.compile(r"[a-z]+")


def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def words(text: str, stemmer=None) -> list[str]:
    """The stems of ``text``'s content words, in order (repeats kept: BM25 counts them)."""
    kept = [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOP_WORDS]
    return (stemmer or _stemmer()).stemWords(kept)


def tokens(text: str, stemmer=None) -> list[str]:
    """The stems of every word of ``text``, stop words kept: a phrase is matched whole ("b-flat clarinet")."""
    return (stemmer or _stemmer()).stemWords(_WORD.findall(text.lower()))


class MentionIndex:
    """Which classes a text names: whether it holds one of a class's phrases as consecutive stemmed words
    ("the mares" names "mare"; "a grandstand" does not name "grand")."""

    def __init__(self, phrases: Sequence[str], phrase_class: Sequence[int], classes: int):
        self._stemmer = _stemmer()
        self.classes = classes
        self._by_first: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for phrase, c in zip(phrases, phrase_class):
            stems = tuple(tokens(phrase, self._stemmer))
            if stems:
                self._by_first.setdefault(stems[0], []).append((stems, int(c)))

    def mentions(self, texts: Sequence[str]) -> torch.Tensor:
        """``[len(texts), classes]``: 1 where the text names the class, else 0."""
        out = torch.zeros(len(texts), self.classes)
        for row, text in enumerate(texts):
            stems = tokens(text, self._stemmer)
            for at, stem in enumerate(stems):
                for phrase, c in self._by_first.get(stem, ()):
                    if tuple(stems[at : at + len(phrase)]) == phrase:
                        out[row, c] = 1.0
        return out


class LexicalIndex:
    """BM25 of a query against ``classes`` documents, each the concatenation of its entries' words."""

    def __init__(self, texts: Sequence[str], entry_class: Sequence[int], classes: int):
        self._stemmer = _stemmer()
        self.entry_words = [Counter(words(text, self._stemmer)) for text in texts]
        self.entry_class = [int(c) for c in entry_class]
        self.counts = [Counter() for _ in range(classes)]
        for counts, c in zip(self.entry_words, self.entry_class):
            self.counts[c].update(counts)
        self.lengths = [sum(counts.values()) for counts in self.counts]
        self.document_frequency = Counter(word for counts in self.counts for word in counts)

    def scores(self, texts: Sequence[str], leave_out: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
        """``[len(texts), classes]``; ``leave_out[i]``: entries whose words query ``i`` must not see."""
        out = torch.zeros(len(texts), len(self.counts))
        for row, text in enumerate(texts):
            counts, lengths, frequency = self.counts, self.lengths, self.document_frequency
            removed = list(leave_out[row]) if leave_out is not None else []
            if removed:  # copy only what leaving out changes
                counts, lengths, frequency = list(counts), list(lengths), Counter(frequency)
                for entry in removed:
                    c = self.entry_class[entry]
                    counts[c] = counts[c] - self.entry_words[entry]
                    lengths[c] = sum(counts[c].values())
                    for word in self.entry_words[entry]:
                        if word not in counts[c]:
                            frequency[word] -= 1
            average = max(sum(lengths) / len(lengths), 1e-9)
            n = len(counts)
            for word in set(words(text, self._stemmer)):
                df = frequency.get(word, 0)
                if df <= 0:
                    continue
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                for c in range(n):
                    tf = counts[c].get(word, 0)
                    if tf:
                        out[row, c] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[c] / average))
        return out
