"""The recipe engine: from downloaded videos to an omnisep corpus (audio, frames, manifest, test mixtures).

For users who have VGGSound or MUSIC videos on disk (we cannot ship them).
A recipe reads the split lists (CLIPSep's layout, VGGSound's own
``vggsound.csv``, or a CSV with ``id`` and ``label`` columns), finds each listed video under a folder, and writes:

* ``audio/<id>.wav``: 16 kHz mono PCM-16, decoded and resampled from the video (PyAV, soxr);
* ``frames/<id>/000001.jpg, ...``: one frame per second (1 fps, numbered from 1 as in CLIPSep);
* ``manifest.jsonl``: our manifest (id, audio, label, video, split, source) with
  the frame folder and count as extra fields; the image query is left to
  ``omnisep embed``, which averages the video's 1 fps frames at centre-1,
  centre, centre+1 (the paper's image query), so evaluate with ``--cache``;
* ``mixtures_val.jsonl`` / ``mixtures_test.jsonl``: one fixed mixture per
  validation / test item (``data/mixtures.py``), the interferer drawn from the
  same split with a generator per item (of another class unless asked otherwise);
* ``mixtures_clean_plus.jsonl`` with a clean target list: the CLEAN+ test sets,
  clean targets with interferers drawn from the (VGGSound) test list;
* ``prepare_report.json``: counts, and every listed video that was missing or undecodable.

Extraction is skipped for items whose outputs already exist (each output is
written atomically, so an existing one is complete); rerunning after an
interruption continues where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from omnisep import fileio
from omnisep.data.mixtures import MixtureList, MixtureSpec
from omnisep.errors import OmniSepError, describe

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")
SAMPLE_RATE = 16000
SPLITS = ("train", "val", "test")
# VGGSound files are often named <11-character YouTube id>_<start seconds>.mp4.
_START_SUFFIX = re.compile(r"^(?P<id>[A-Za-z0-9_-]{11})_\d+$")


@dataclasses.dataclass(frozen=True)
class ListedItem:
    id: str
    label: str


def read_split_list(
    path: str | os.PathLike, label_transform: Callable[[str], str] = str, split: str | None = None
) -> list[ListedItem]:
    """Read one split list.

    Three layouts are accepted:

    * CLIPSep's, no header, four columns ``audio path, frame folder, frame count,
      label`` (e.g. ``data/vggsound/audio/e/2/e2rM750cFGc.wav,...,12,playing didgeridoo``):
      the id is the audio file's name without suffix;
    * VGGSound's own ``vggsound.csv``, no header, ``YouTube id, start seconds,
      label, train|test``: the id is the YouTube id, and only the rows of
      ``split`` are kept (all rows when ``split`` is None);
    * a CSV with a header naming ``id`` and ``label`` columns (other columns ignored).
    """
    path = Path(path)
    if not path.is_file():
        raise OmniSepError(f"Split list {describe(path)} does not exist.")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise OmniSepError(f"Split list {describe(path)} is not a readable CSV file ({error}).") from None
    if not rows:
        raise OmniSepError(f"Split list {describe(path)} is empty.")
    header = [cell.strip().lower() for cell in rows[0]]
    items = []
    if "id" in header and "label" in header:
        id_column, label_column = header.index("id"), header.index("label")
        for number, row in enumerate(rows[1:], start=2):
            if len(row) <= max(id_column, label_column) or not row[id_column].strip() or not row[label_column].strip():
                raise OmniSepError(f"Split list {describe(path)} line {number}: missing id or label.")
            items.append(ListedItem(row[id_column].strip(), label_transform(row[label_column].strip())))
    elif _is_vggsound_csv(rows[0]):
        for number, row in enumerate(rows, start=1):
            if not _is_vggsound_csv(row):
                raise OmniSepError(f"Split list {describe(path)} line {number}: expected 'YouTube id, start, label, train|test'.")
            if split is None or row[3].strip() == split:
                items.append(ListedItem(row[0].strip(), label_transform(row[2].strip())))
    else:
        for number, row in enumerate(rows, start=1):
            if len(row) != 4 or not row[0].strip() or not row[3].strip():
                raise OmniSepError(
                    f"Split list {describe(path)} line {number}: expected CLIPSep's four columns "
                    "(audio path, frame folder, frame count, label), VGGSound's (id, start, label, train|test) "
                    "or a header with 'id' and 'label'."
                )
            items.append(ListedItem(Path(row[0].strip()).stem, label_transform(row[3].strip())))
    if not items:
        raise OmniSepError(f"Split list {describe(path)} lists no items" + (f" of split '{split}'." if split else "."))
    return items


def _is_vggsound_csv(row: list[str]) -> bool:
    return len(row) == 4 and row[1].strip().isdigit() and row[3].strip() in ("train", "test") and bool(row[2].strip())


def index_videos(videos_dir: str | os.PathLike) -> dict[str, Path]:
    """Map video ids to files under ``videos_dir`` (any depth).

    A file is found by its name without suffix, and also, for names like
    ``<YouTube id>_<start>``, by the bare 11-character YouTube id (the ids in
    CLIPSep's lists). An exact name wins over the bare-id form.
    """
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise OmniSepError(f"Video folder {describe(videos_dir)} does not exist.")
    exact: dict[str, Path] = {}
    by_youtube_id: dict[str, Path] = {}
    for path in sorted(videos_dir.rglob("*")):
        if path.suffix.lower() not in VIDEO_SUFFIXES or not path.is_file():
            continue
        exact.setdefault(path.stem, path)
        match = _START_SUFFIX.match(path.stem)
        if match:
            by_youtube_id.setdefault(match.group("id"), path)
    return {**by_youtube_id, **exact}


# ----------------------------------------------------------------------------- extraction


def _atomic_frames(frames: list[np.ndarray], out_dir: Path) -> None:
    from PIL import Image

    with fileio.atomic_dir(out_dir) as staging:
        for number, frame in enumerate(frames, start=1):
            Image.fromarray(frame).save(staging / f"{number:06d}.jpg", quality=95)


def extract_item(job: tuple[str, str, str, float, bool]) -> dict:
    """Audio and 1 fps frames of one video; runs in a pool worker. Returns a status record."""
    from omnisep.audio import load_audio, save_audio
    from omnisep.images import video_frames

    item_id, video, out_root, fps, overwrite = job
    out_root = Path(out_root)
    audio_path = out_root / "audio" / f"{item_id}.wav"
    frames_dir = out_root / "frames" / item_id
    try:
        if overwrite or not audio_path.is_file():
            audio, _ = load_audio(video, sample_rate=SAMPLE_RATE, mono=True)
            save_audio(audio_path, audio, SAMPLE_RATE, subtype="PCM_16", overwrite=True)
        if overwrite or not frames_dir.is_dir() or not any(frames_dir.glob("*.jpg")):
            _atomic_frames(video_frames(video, fps=fps), frames_dir)
    except OmniSepError as error:
        return {"id": item_id, "ok": False, "error": str(error)}
    frame_count = len(list(frames_dir.glob("*.jpg")))
    return {"id": item_id, "ok": True, "frames": frame_count}


def _run_jobs(jobs: list, workers: int, progress: bool) -> list[dict]:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="video", desc="extract", dynamic_ncols=True)
    results = []
    try:
        if workers <= 1:
            for job in jobs:
                results.append(extract_item(job))
                if bar is not None:
                    bar.update(1)
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for result in pool.imap_unordered(extract_item, jobs, chunksize=4):
                    results.append(result)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


# ----------------------------------------------------------------------------- mixtures


def draw_mixtures(
    targets: Sequence[ListedItem],
    pool: Sequence[ListedItem],
    seed: int,
    allow_same_label: bool = False,
    id_prefix: str = "",
) -> list[MixtureSpec]:
    """One mixture per target, the interferer drawn from ``pool`` with ``default_rng([seed, index])``.

    That entropy, ``[seed, index]``, is the row's recorded ``seed`` (see data/mixtures.py).

    CLIPSep draws from the whole list (the same class, even the same clip, can
    come up); we exclude the target's class unless ``allow_same_label``.
    """
    rows = []
    for index, target in enumerate(targets):
        candidates = [item for item in pool if item.id != target.id and (allow_same_label or item.label != target.label)]
        if not candidates:
            raise OmniSepError(f"No interferer of another class than '{target.label}' is available for item '{target.id}'.")
        entropy = (int(seed), index)
        rng = np.random.default_rng(list(entropy))
        interferer = candidates[int(rng.integers(len(candidates)))]
        rows.append(MixtureSpec(target.id, (interferer.id,), id=f"{id_prefix}{index:05d}", seed=entropy))
    return rows


# ----------------------------------------------------------------------------- recipe


@dataclasses.dataclass
class RecipeResult:
    out_dir: Path
    manifest: Path
    counts: dict[str, int]
    missing: list[str]
    failed: list[dict]
    mixture_lists: list[Path]


def prepare(
    source: str,
    videos_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    split_lists: dict[str, str | os.PathLike],
    *,
    clean_list: str | os.PathLike | None = None,
    clean_interferers: Sequence[ListedItem] | None = None,
    extra_manifest_items: Sequence = (),
    label_transform: Callable[[str], str] = str,
    fps: float = 1.0,
    seed: int = 1234,
    allow_same_label: bool = False,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> RecipeResult:
    """Extract, index and pair one dataset (see the module docstring for the outputs)."""
    from omnisep.data.manifest import ManifestItem, write_manifest

    unknown = sorted(set(split_lists) - set(SPLITS))
    if unknown:
        raise OmniSepError(f"Unknown split name(s) {', '.join(unknown)}; use {', '.join(SPLITS)}.")
    if not split_lists:
        raise OmniSepError("No split list was given; pass at least --split test=PATH.")
    out_dir = Path(out_dir)
    videos = index_videos(videos_dir)
    listed: dict[str, list[ListedItem]] = {
        name: read_split_list(path, label_transform, split=name) for name, path in split_lists.items()
    }
    clean = read_split_list(clean_list, label_transform) if clean_list is not None else []

    # An item in several lists belongs to the most specific one: test, then val, then train
    # (CLIPSep's validation list is carved out of VGGSound's training split).
    split_of: dict[str, str] = {}
    label_of: dict[str, str] = {}
    for name in ("test", "val", "train"):
        for item in listed.get(name, []):
            if item.id not in split_of:
                split_of[item.id] = name
                label_of[item.id] = item.label
    for name in SPLITS:
        seen: set[str] = set()
        listed[name] = [
            item for item in listed.get(name, [])
            if split_of[item.id] == name and not (item.id in seen or seen.add(item.id))
        ]  # each id once, at its first row
    for item in clean:
        split_of.setdefault(item.id, "test")
        label_of.setdefault(item.id, item.label)

    wanted = sorted(split_of, key=lambda item_id: (SPLITS.index(split_of[item_id]), item_id))
    missing = [item_id for item_id in wanted if item_id not in videos]
    jobs = [(item_id, str(videos[item_id]), str(out_dir), fps, overwrite) for item_id in wanted if item_id in videos]
    results = _run_jobs(jobs, workers, progress)
    ok = {r["id"]: r for r in results if r["ok"]}
    failed = sorted((r for r in results if not r["ok"]), key=lambda r: r["id"])

    clean_ids = {item.id for item in clean}
    manifest_items = []
    for item_id in wanted:
        if item_id not in ok:
            continue
        frame_count = ok[item_id]["frames"]
        extra = {"frames": f"frames/{item_id}", "frame_count": str(frame_count)}
        if item_id in clean_ids:
            extra["clean"] = "true"
        manifest_items.append(
            ManifestItem(
                id=item_id,
                audio=out_dir / "audio" / f"{item_id}.wav",
                label=label_of[item_id],
                # No still image: `omnisep embed` then averages the video's 1 fps frames at
                # centre-1, centre, centre+1, the paper's image query.
                video=Path(videos[item_id]).resolve(),
                split=split_of[item_id],
                source=source,
                extra=extra,
            )
        )
    manifest_items.extend(extra_manifest_items)
    if not manifest_items:
        raise OmniSepError(
            f"None of the {len(wanted)} listed videos could be prepared from {describe(videos_dir)} "
            f"({len(missing)} missing, {len(failed)} undecodable); check the folder and the split lists."
        )
    manifest_path = write_manifest(out_dir / "manifest.jsonl", manifest_items)

    present = {item.id for item in manifest_items}
    mixture_lists = []
    for name in ("val", "test"):
        members = [item for item in listed.get(name, []) if item.id in present]
        if len(members) >= 2:
            path = out_dir / f"mixtures_{name}.jsonl"
            MixtureList(draw_mixtures(members, members, seed, allow_same_label, id_prefix=f"{name}-")).write(path)
            mixture_lists.append(path)
    if clean:
        targets = [item for item in clean if item.id in present]
        pool = clean_interferers if clean_interferers is not None else [i for i in listed.get("test", []) if i.id in present]
        if not targets or not pool:
            raise OmniSepError(
                f"Clean list {describe(clean_list)}: no prepared target or no test-list interferer, so CLEAN+ cannot be built."
            )
        path = out_dir / "mixtures_clean_plus.jsonl"
        MixtureList(draw_mixtures(targets, pool, seed, allow_same_label, id_prefix="clean-")).write(path)
        mixture_lists.append(path)

    counts = {name: sum(1 for item in manifest_items if item.split == name) for name in (*SPLITS, "interferer")}
    counts.update(listed=len(wanted), prepared=len(ok), missing=len(missing), failed=len(failed), clean=len(clean_ids & present))
    report = {"source": source, "counts": counts, "missing_videos": missing, "failed": failed,
              "mixture_lists": [p.name for p in mixture_lists], "fps": fps, "seed": seed}
    fileio.write_text(out_dir / "prepare_report.json", json.dumps(report, indent=2) + "\n")
    return RecipeResult(out_dir, manifest_path, counts, missing, failed, mixture_lists)
