"""CLIP's byte-level BPE tokenizer, as ImageBind's text branch expects it.

Text is repaired (ftfy), HTML-unescaped twice, whitespace-collapsed and
lower-cased; split into words by CLIP's pattern; each word's UTF-8 bytes are
mapped to printable characters, the last one marked ``</w>``, and merged
pair by pair in merge-rank order. Ids: 256 byte symbols, their 256 ``</w>``
forms, one id per merge (48,894), then ``<|startoftext|>`` (49406) and
``<|endoftext|>`` (49407). A row is ``[sot] + ids`` cut to 76 entries, then
``eot``, then zeros to 77.
"""

from __future__ import annotations

import gzip
import html
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import ftfy
import regex
import torch

from omnisep.errors import OmniSepError, describe

START = "<|startoftext|>"
END = "<|endoftext|>"
DEFAULT_MERGES = 49152 - 256 - 2  # merges used by CLIP: lines 1 .. 48894 after the header
WORD_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


def default_vocab_path() -> Path:
    return Path(str(resources.files("omnisep.encoders") / "assets" / "bpe_simple_vocab_16e6.txt.gz"))


@lru_cache(maxsize=1)
def byte_symbols() -> dict[int, str]:
    """Each byte -> one printable character: printable Latin-1 bytes map to themselves,
    the rest (controls, space, a few others) to code points from 256 upwards, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    # Vocabulary order lists printable bytes first, then the remapped ones.
    return {byte: mapping[byte] for byte in printable + [b for b in range(256) if b not in printable]}


def clean_text(text: str) -> str:
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


class ClipTokenizer:
    def __init__(self, vocab_path: str | os.PathLike | None = None, num_merges: int | None = DEFAULT_MERGES, context_length: int = 77):
        path = Path(vocab_path) if vocab_path is not None else default_vocab_path()
        try:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                lines = handle.read().split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise OmniSepError(f"BPE vocabulary {describe(path)} cannot be read ({exc}).") from None
        body = lines[1:]  # line 0 is a version header
        if num_merges is not None:
            body = body[:num_merges]
        merges = [tuple(line.split()) for line in body if line.strip()]
        if any(len(pair) != 2 for pair in merges):
            raise OmniSepError(f"BPE vocabulary {describe(path)} is not a list of merges (one pair per line).")
        self.byte_to_symbol = byte_symbols()
        symbols = list(self.byte_to_symbol.values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(pair) for pair in merges] + [START, END]
        self.encoder = {token: index for index, token in enumerate(vocab)}
        self.merge_rank = {pair: rank for rank, pair in enumerate(merges)}
        self.sot, self.eot = self.encoder[START], self.encoder[END]
        self.context_length = context_length
        self._cache = {START: START, END: END}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _bpe(self, word: str) -> str:
        """Space-separated BPE symbols of one pre-split word (already byte-mapped)."""
        if word in self._cache:
            return self._cache[word]
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(parts[i], parts[i + 1]) for i in range(len(parts) - 1)}
            best = min(pairs, key=lambda pair: self.merge_rank.get(pair, float("inf")))
            if best not in self.merge_rank:
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        result = " ".join(parts)
        if len(self._cache) < 100_000:
            self._cache[word] = result
        return result

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in WORD_PATTERN.findall(clean_text(text)):
            mapped = "".join(self.byte_to_symbol[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[symbol] for symbol in self._bpe(mapped).split(" "))
        return ids

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        """``[N, context_length]`` int64 rows: truncated to fit, always ending with ``eot``."""
        if isinstance(texts, str):
            texts = [texts]
        rows = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = ([self.sot] + self.encode(text))[: self.context_length - 1] + [self.eot]
            rows[row, : len(ids)] = torch.tensor(ids)
        return rows
