"""A validation split of held-out *sources*, for choices that must carry over to unseen recordings.

The corpus's validation clips are new clips of the training sources: the same
GM programs, espeak-ng voices and emoji artist. Its test split is not: half of
its instrument clips play held-out programs, its speech held-out voices, its
pictures another artist. Choices tuned on the validation split stopped
predicting the test split (docs/training.md), so this split copies the test
split's kind of shift with sources neither other split uses:

- instruments with another FluidR3 program of the same name (``SHIFT_PROGRAMS``:
  honky-tonk piano, pan flute, marimba, percussive and rock organ; the
  orchestra drum kit) get new renders;
- speech gets new clips in espeak-ng voices heard nowhere else (``SHIFT_VARIANTS``);
- every item's picture comes from another emoji artist (Microsoft's Fluent
  flat emoji by default, through the Query-Net picture sources);
- recordings keep the validation clips: their groups are already held out of
  training, as the test's are.

It is written beside the corpus (``manifest-shift.jsonl``, ``mixtures_shift.jsonl``,
``audio/shift/``, ``images/shift/``, ``shift.json``). Its items have ids of their
own, so an embedding cache of the corpus is never mistaken for one of this split;
the manifest also lists the training items unchanged, since the evaluation draws
audio queries from a class's training clips.
"""

from __future__ import annotations

import json
import os
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from omnisep import fileio
from omnisep.data.corpus import SAMPLE_RATE, slug
from omnisep.data.corpus.build import MARKER, write_jsonl, write_text, write_wav
from omnisep.data.corpus.splits import make_mixtures
from omnisep.data.mixtures import MixtureList
from omnisep.errors import OmniSepError, describe

SHIFT = "shift"
SHIFT_CODE = 3  # the split's place in the clip seed, after train / val / test


def default_shift_families() -> list:
    from omnisep.data.corpus.instruments import InstrumentFamily
    from omnisep.data.corpus.speech import SpeechFamily

    return [InstrumentFamily(), SpeechFamily()]


def read_corpus(corpus_dir: str | os.PathLike) -> tuple[int, list[dict]]:
    """(the build's seed, its manifest rows); one sentence if the folder holds no corpus with validation items."""
    corpus_dir = Path(corpus_dir)
    if not (corpus_dir / MARKER).is_file() or not (corpus_dir / "manifest.jsonl").is_file():
        raise OmniSepError(f"{describe(corpus_dir)} holds no corpus (no {MARKER} and manifest.jsonl): "
                           "build one with `omnisep corpus build` first.")
    seed = int(json.loads((corpus_dir / MARKER).read_text(encoding="utf-8"))["seed"])
    rows = [json.loads(line) for line in (corpus_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if line]
    if not any(row["split"] == "val" for row in rows):
        raise OmniSepError(f"{describe(corpus_dir / 'manifest.jsonl')} has no validation items to shift.")
    return seed, rows


def build_shift_split(
    corpus_dir: str | os.PathLike,
    picture_sets: dict[str, list[np.ndarray]],
    pictures: dict | None = None,
    families: list | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Write the shifted validation split beside the corpus in ``corpus_dir``; returns what ``shift.json`` records.

    ``picture_sets`` is ``{label: [RGB array, ...]}`` by the other artist (``omnisep corpus shift`` draws them from
    a Query-Net picture source), ``pictures`` what to record about them (source, package, licence);
    ``families`` replaces the real renderers in tests.
    """
    corpus_dir = Path(corpus_dir)
    seed, rows = read_corpus(corpus_dir)
    val = sorted((row for row in rows if row["split"] == "val"), key=lambda row: row["id"])
    labels = sorted({row["label"] for row in val})
    families = default_shift_families() if families is None else families

    image_paths: dict[str, list[str]] = {}
    for label, arrays in sorted(picture_sets.items()):
        if label not in labels:
            continue
        for k, rgb in enumerate(arrays):
            relative = f"images/{SHIFT}/{slug(label)}-{k}.png"
            with fileio.atomic_path(corpus_dir / relative) as partial:
                Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(partial, format="PNG")
            image_paths.setdefault(label, []).append(relative)

    shifted_rows, made, kept = [], Counter(), Counter()
    position: Counter = Counter()
    for done, row in enumerate(val):
        label = row["label"]
        if progress is not None:
            progress(done, len(val), label)
        index = position[label]
        position[label] += 1
        rng = np.random.default_rng([seed, zlib.crc32(label.encode()), SHIFT_CODE, index])
        family = next((f for f in families if label in f.labels() and f.available(label, SHIFT)), None)
        if family is not None:
            item_id = f"{slug(label)}-{SHIFT}-{index:03d}"
            clip = family.make(label, SHIFT, rng, item_id)
            audio = f"audio/{SHIFT}/{slug(label)}/{item_id}.wav"
            write_wav(corpus_dir / audio, clip.audio)
            new = {**row, "id": item_id, "audio": audio, "source": "+".join(clip.sources), "package": clip.package,
                   "licence": clip.licence, "duration": round(len(clip.audio) / SAMPLE_RATE, 3)}
            made[label] += 1
        else:
            new = {**row, "id": f"{SHIFT}-{row['id']}"}
            kept[label] += 1
        choices = image_paths.get(label, [])
        new["image"] = choices[int(rng.integers(len(choices)))] if choices else None
        shifted_rows.append(new)
    if progress is not None:
        progress(len(val), len(val), "")

    train = [row for row in rows if row["split"] == "train"]  # the audio queries' example clips, as for the test split
    write_jsonl(corpus_dir / "manifest-shift.jsonl", train + shifted_rows)
    mixtures = [replace(spec, id=spec.id.replace("mix-val-", f"mix-{SHIFT}-", 1))
                for spec in make_mixtures(shifted_rows, "val", seed)]
    MixtureList(mixtures).write(corpus_dir / "mixtures_shift.jsonl")
    record = {
        "format": "omnisep-corpus-shift", "format_version": 1, "seed": seed, "items": len(shifted_rows),
        "mixtures": len(mixtures), "new_clips": dict(sorted(made.items())), "kept_validation_clips": dict(sorted(kept.items())),
        "pictures": {**(pictures or {}), "classes": len(image_paths), "files": sum(map(len, image_paths.values()))},
        "without_picture": sorted(set(labels) - set(image_paths)),
    }
    write_text(corpus_dir / "shift.json", json.dumps(record, indent=1) + "\n")
    return record
