"""Image queries: one or two emoji per class, drawn by two different artists.

Train and validation items get Google's drawings (npm emoji-datasource-google),
test items get Twitter's Twemoji (npm emoji-datasource-twitter), so image
queries are tested on drawings the model never saw. Emoji are flattened on
white and scaled to 256 px, the size image encoders expect to crop from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from omnisep import fileio
from omnisep.data.corpus import CLASSES, slug
from omnisep.data.corpus.family import SourcePackage
from omnisep.data.corpus.packages import SourceCache

IMAGE_SIZE = 256


@dataclass(frozen=True)
class EmojiSet:
    name: str  # folder name in the corpus and in the npm package's img/
    package: str
    licence: str


GOOGLE = EmojiSet("google", "emoji-datasource-google", "Apache-2.0 (Noto Emoji images; package MIT)")
TWITTER = EmojiSet("twitter", "emoji-datasource-twitter", "CC-BY-4.0 (Twemoji images by Twitter; package MIT)")
SET_FOR_SPLIT = {"train": GOOGLE, "val": GOOGLE, "test": TWITTER}


class EmojiImages:
    """Writes each class's emoji into the corpus and answers which image an item gets."""

    def __init__(self, sources: SourceCache, out_dir: Path):
        self.sources = sources
        self.out_dir = out_dir
        self.versions: dict[str, str] = {}
        self.written: dict[tuple[str, str], list[str]] = {}  # (set, label) -> relative paths

    def _source_png(self, emoji_set: EmojiSet, code: str) -> Path | None:
        fetched = self.sources.get("npm", emoji_set.package)
        self.versions[emoji_set.name] = fetched.version
        path = fetched.root / "package" / "img" / emoji_set.name / "64" / f"{code}.png"
        return path if path.is_file() else None

    def images(self, label: str, split: str) -> list[str]:
        """Relative paths of the class's images for this split (written on first use); [] if none."""
        emoji_set = SET_FOR_SPLIT[split]
        key = (emoji_set.name, label)
        if key not in self.written:
            paths = []
            for code in CLASSES[label].emoji:
                source = self._source_png(emoji_set, code)
                if source is None:
                    continue
                relative = f"images/{emoji_set.name}/{slug(label)}-{code.split('-')[0]}.png"
                write_flat_png(source, self.out_dir / relative)
                paths.append(relative)
            self.written[key] = paths
        return self.written[key]

    def pick(self, label: str, split: str, rng: np.random.Generator) -> str | None:
        options = self.images(label, split)
        return options[int(rng.integers(len(options)))] if options else None

    def packages(self) -> list[SourcePackage]:
        rows = []
        for emoji_set, use in ((GOOGLE, "image queries, train/val"), (TWITTER, "image queries, test")):
            if emoji_set.name in self.versions:
                rows.append(SourcePackage(f"npm:{emoji_set.package}", self.versions[emoji_set.name], emoji_set.licence, use))
        return rows


def write_flat_png(source: Path, target: Path) -> None:
    """RGBA emoji -> RGB on white at IMAGE_SIZE, written atomically."""
    with Image.open(source) as image:
        rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(canvas, rgba).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
    with fileio.atomic_path(target) as partial:
        flat.save(partial, format="PNG")
