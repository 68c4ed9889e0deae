"""Assemble the corpus: clips per class and split, manifest, mixture lists, labels and licences.

Every clip is drawn from its own generator seeded by (seed, class, split,
index), so a build is reproducible and ``--only`` builds exactly the clips a
full build would hold for those classes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from omnisep import fileio
from omnisep.data.corpus import CLASSES, SAMPLE_RATE, SPLITS, VOCABULARY, slug
from omnisep.data.corpus.emoji import EmojiImages
from omnisep.data.corpus.family import Clip, SourcePackage
from omnisep.data.corpus.packages import SourceCache
from omnisep.data.corpus.splits import make_mixtures
from omnisep.data.mixtures import MixtureList
from omnisep.errors import OmniSepError

SPLIT_SHARES = {"train": 0.7, "val": 0.15, "test": 0.15}
MARKER = "corpus.json"

# Share of a class's clips each family makes, where it can (renders for
# instruments; the few real instrument takes add a real recording chain).
FAMILY_WEIGHTS = {
    "gm-render": 3.0,
    "recordings": 1.0,
    "espeak-ng": 1.0,
}
CLASS_WEIGHTS = {("bell ringing", "gm-render"): 1.0, ("bell ringing", "recordings"): 1.5,
                 ("playing drums", "recordings"): 1.5}


@dataclass
class BuildReport:
    out_dir: Path
    seed: int
    clips_per_class: int
    items: int = 0
    hours: float = 0.0
    seconds: float = 0.0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # label -> split -> items
    dropped: list[str] = field(default_factory=list)  # classes with no usable source
    missing_splits: dict[str, list[str]] = field(default_factory=dict)  # label -> splits without a source
    recording_groups: dict[str, dict[str, int]] = field(default_factory=dict)  # label -> split -> real recording groups

    def to_dict(self) -> dict:
        return {"format": "omnisep-corpus", "format_version": 1, "seed": self.seed,
                "clips_per_class": self.clips_per_class, "items": self.items, "hours": round(self.hours, 3),
                "build_seconds": round(self.seconds, 1), "counts": self.counts, "dropped": self.dropped,
                "missing_splits": self.missing_splits, "recording_groups": self.recording_groups}


def split_sizes(total: int) -> dict[str, int]:
    train = round(total * SPLIT_SHARES["train"])
    val = round(total * SPLIT_SHARES["val"])
    return {"train": train, "val": val, "test": max(total - train - val, 0)}


def default_families(sources: SourceCache, seed: int, labels: Sequence[str]) -> list:
    """Every family the recipe knows, restricted to the wanted labels (a family with none is skipped)."""
    from omnisep.data.corpus.instruments import InstrumentFamily
    from omnisep.data.corpus.recordings import RecordingFamily, RECORDINGS
    from omnisep.data.corpus.speech import LABEL as SPEECH, SpeechFamily

    families = []
    instruments = InstrumentFamily()
    if instruments.labels() & set(labels):
        families.append(instruments)
    if set(RECORDINGS) & set(labels):
        families.append(RecordingFamily(sources, seed, list(labels)))
    if SPEECH in labels:
        families.append(SpeechFamily())
    return families


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OmniSepError(f"'{out_dir}' exists and is not a folder.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise OmniSepError(f"'{out_dir}' is not empty and holds no corpus: choose an empty or new folder.")
    for stale in ("audio", "images"):
        if (out_dir / stale).is_dir():
            shutil.rmtree(out_dir / stale)
    out_dir.mkdir(parents=True, exist_ok=True)


def write_wav(path: Path, audio: np.ndarray) -> None:
    """16-bit wav, written to a temporary name first so a crash leaves no truncated clip."""
    with fileio.atomic_path(path) as partial:
        sf.write(str(partial), np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")


def write_text(path: Path, text: str) -> None:
    fileio.write_text(path, text, fsync=False)


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def build_corpus(
    out_dir: str | os.PathLike,
    seed: int = 1234,
    clips_per_class: int = 60,
    only: Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    families: list | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> BuildReport:
    """Build the corpus into `out_dir` and return counts per class and split."""
    started = time.monotonic()
    out_dir = Path(out_dir)
    if only:
        unknown = [label for label in only if label not in CLASSES]
        if unknown:
            raise OmniSepError(f"unknown class '{unknown[0]}': see `omnisep corpus sources` for the vocabulary.")
    if clips_per_class < 3:
        raise OmniSepError(f"--clips-per-class must be at least 3 (one per split), not {clips_per_class}.")
    labels = [spec.label for spec in VOCABULARY if not only or spec.label in only]
    _prepare_out_dir(out_dir)
    sources = SourceCache(cache_dir, offline=offline)
    if families is None:
        families = default_families(sources, seed, labels)
    images = EmojiImages(sources, out_dir)
    report = BuildReport(out_dir, seed, clips_per_class)
    for family in families:
        if hasattr(family, "group_counts"):
            report.recording_groups = family.group_counts()

    plan: list[tuple[str, str, int]] = []
    for label in labels:
        if not any(label in family.labels() for family in families):
            report.dropped.append(label)
            continue
        for split, count in split_sizes(clips_per_class).items():
            if not any(label in family.labels() and family.available(label, split) for family in families):
                report.missing_splits.setdefault(label, []).append(split)
                continue
            plan.extend((label, split, i) for i in range(count))

    rows: list[dict] = []
    total_seconds = 0.0
    for done, (label, split, index) in enumerate(plan):
        if progress is not None:
            progress(done, len(plan), label)
        split_index = SPLITS.index(split)
        label_code = zlib.crc32(label.encode())
        rng = np.random.default_rng([seed, label_code, split_index, index])
        family = _choose_family(families, label, split, rng)
        item_id = f"{slug(label)}-{split}-{index:03d}"
        clip: Clip = family.make(label, split, rng, item_id)
        audio_path = f"audio/{split}/{slug(label)}/{item_id}.wav"
        write_wav(out_dir / audio_path, clip.audio)
        duration = len(clip.audio) / SAMPLE_RATE
        total_seconds += duration
        image = images.pick(label, split, np.random.default_rng([seed, label_code, split_index, index, 1]))
        rows.append({"id": item_id, "audio": audio_path, "label": label, "image": image, "split": split,
                     "source": "+".join(clip.sources), "package": clip.package, "licence": clip.licence,
                     "duration": round(duration, 3)})
    if progress is not None:
        progress(len(plan), len(plan), "")

    counts: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        counts[row["label"]][row["split"]] += 1
    report.counts = {label: {s: counts[label][s] for s in SPLITS} for label in labels if label in counts}
    report.items = len(rows)
    report.hours = total_seconds / 3600

    write_jsonl(out_dir / "manifest.jsonl", rows)
    MixtureList(make_mixtures(rows, "val", seed)).write(out_dir / "mixtures_val.jsonl")
    MixtureList(make_mixtures(rows, "test", seed)).write(out_dir / "mixtures_test.jsonl")
    write_text(out_dir / "labels.json", json.dumps(sorted(report.counts, key=labels.index), indent=1) + "\n")
    packages = [row for family in families for row in family.packages()] + images.packages()
    write_text(out_dir / "sources.md", sources_markdown(packages, rows, report))
    report.seconds = time.monotonic() - started
    write_text(out_dir / MARKER, json.dumps(report.to_dict(), indent=1) + "\n")
    return report


def _choose_family(families: list, label: str, split: str, rng: np.random.Generator):
    able = [f for f in families if label in f.labels() and f.available(label, split)]
    weights = np.array([CLASS_WEIGHTS.get((label, f.name), FAMILY_WEIGHTS.get(f.name, 1.0)) for f in able])
    return able[int(rng.choice(len(able), p=weights / weights.sum()))]


def sources_markdown(packages: list[SourcePackage], rows: list[dict], report: BuildReport) -> str:
    """The licences table shipped next to the manifest."""
    per_package = Counter(row["package"] for row in rows)
    lines = [
        "# Corpus sources and licences",
        "",
        f"Built by `omnisep corpus build` (seed {report.seed}, {report.clips_per_class} clips per class). "
        "Every clip's package and licence is also in `manifest.jsonl`.",
        "",
        "| package | version | licence | used for | clips |",
        "| --- | --- | --- | --- | --- |",
    ]
    for package in sorted(packages, key=lambda p: p.package):
        lines.append(f"| {package.package} | {package.version} | {package.licence} | {package.used_for} | "
                     f"{per_package.get(package.package, '-')} |")
    if report.dropped:
        lines += ["", "Classes dropped (no usable source): " + ", ".join(report.dropped) + "."]
    return "\n".join(lines) + "\n"
