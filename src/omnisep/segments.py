"""What a scan found, as time segments people can use: JSON, CSV, Audacity labels, a timeline.

A :class:`~omnisep.scan.ScanResult` holds, per label and frame, the evidence
that the label sounds: the share of the mixture's energy the label's
separation keeps, discounted (when verified) by how much that separated audio
sounds like the label. A label is *found* when its presence (0.9 quantile of
the evidence over the audible frames) reaches the threshold; its *segments*
are the runs of audible frames whose evidence reaches the threshold, with
gaps up to ``merge_gap`` seconds bridged and runs shorter than
``min_seconds`` dropped. A segment's confidence is its mean evidence.

Every writer is atomic (temporary file in the target folder, then rename), so
a file on disk is always complete.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from omnisep.errors import OmniSepError, describe
from omnisep.scan import DEFAULT_THRESHOLD, ScanResult

EXPORT_SUFFIXES = {
    "json": ".scan.json",
    "csv": ".segments.csv",
    "audacity": ".labels.txt",
    "timeline": ".timeline.png",
}


@dataclasses.dataclass(frozen=True)
class Segment:
    label: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # mean evidence over the segment's audible frames, in [0, 1]

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "confidence": round(self.confidence, 4),
        }


def found_labels(result: ScanResult, threshold: float = DEFAULT_THRESHOLD) -> list[int]:
    """Indices of the labels whose presence reaches the threshold, most present first."""
    return [i for i in result.ranking() if result.presence[i] >= threshold]


def label_segments(
    result: ScanResult, index: int, threshold: float = DEFAULT_THRESHOLD, min_seconds: float = 0.0, merge_gap: float = 0.0
) -> list[Segment]:
    """One label's segments (see the module docstring), in time order."""
    hits = (result.evidence[index] >= threshold) & result.audible
    frame = result.frame_seconds
    runs: list[list[int]] = []  # [first frame, stop frame)
    for f in np.flatnonzero(hits):
        if runs and (f - runs[-1][1]) * frame <= merge_gap + 1e-9:
            runs[-1][1] = f + 1
        else:
            runs.append([f, f + 1])
    segments = []
    for first, stop in runs:
        start, end = float(result.times[first]), min(result.duration, float(stop * frame))
        if end - start + 1e-9 < min_seconds:
            continue
        inside = result.audible[first:stop]
        ratios = result.evidence[index, first:stop][inside]
        confidence = float(ratios.mean()) if ratios.size else 0.0
        segments.append(Segment(result.labels[index], start, end, confidence))
    return segments


def find_segments(
    result: ScanResult, threshold: float = DEFAULT_THRESHOLD, min_seconds: float = 0.0, merge_gap: float = 0.0
) -> list[Segment]:
    """Segments of every found label, sorted by start time (then by label)."""
    if not 0.0 <= threshold <= 1.0:
        raise OmniSepError(f"the scan threshold must be between 0 and 1, got {threshold}")
    if min_seconds < 0 or merge_gap < 0:
        raise OmniSepError("the shortest segment and the bridged gap must be >= 0 seconds")
    segments = [
        segment
        for index in found_labels(result, threshold)
        for segment in label_segments(result, index, threshold, min_seconds, merge_gap)
    ]
    return sorted(segments, key=lambda s: (s.start, s.label))


# -- text formats ------------------------------------------------------------------------------


def segments_json(result: ScanResult, segments: Sequence[Segment], threshold: float, **extra) -> dict:
    """The scan summary (``ScanResult.to_dict``) plus the segments and what was found."""
    summary = {**extra, **result.to_dict(threshold)}
    summary["found"] = [
        {"label": result.labels[i], "presence": round(float(result.presence[i]), 4)} for i in found_labels(result, threshold)
    ]
    summary["segments"] = [segment.to_dict() for segment in segments]
    return summary


def segments_csv(segments: Sequence[Segment]) -> str:
    """``label,start,end,confidence`` with a header line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label", "start", "end", "confidence"])
    for segment in segments:
        writer.writerow([segment.label, f"{segment.start:.3f}", f"{segment.end:.3f}", f"{segment.confidence:.4f}"])
    return buffer.getvalue()


def audacity_labels(segments: Sequence[Segment]) -> str:
    """Audacity's label track: ``start<TAB>end<TAB>label`` per line, seconds (File > Import > Labels)."""
    return "".join(f"{s.start:.6f}\t{s.end:.6f}\t{_one_line(s.label)}\n" for s in segments)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _write_text_atomic(path: Path, text: str) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(temp, 0o644)  # mkstemp makes it private; an export is not
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


# -- timeline picture --------------------------------------------------------------------------


def plot_timeline(
    result: ScanResult,
    segments: Sequence[Segment],
    path: str | os.PathLike,
    threshold: float = DEFAULT_THRESHOLD,
    title: str | None = None,
    max_labels: int = 12,
) -> Path:
    """One row per found label: its segments as bars (opacity = confidence) over its ratio curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise OmniSepError(f"the timeline {describe(path)} must be a .png file")
    rows = found_labels(result, threshold)[:max_labels]
    n = max(len(rows), 1)
    fig, axes = plt.subplots(
        n + 1, 1, figsize=(10, 1.1 + 0.55 * (n + 1)), dpi=110, sharex=True, squeeze=False,
        gridspec_kw={"height_ratios": [1.2] + [1] * n},
    )
    axes = axes[:, 0]
    end = max(result.duration, 1e-3)
    times = result.times + result.frame_seconds / 2
    colours = matplotlib.colormaps["tab10"]
    # Top row: how loud the mixture is (what the ratios are relative to).
    level = np.where(result.audible, 1.0, 0.0)
    axes[0].fill_between(result.times, 0, level, step="post", color="#bbbbbb", label="audible")
    axes[0].set_yticks([])
    axes[0].set_ylabel("audible", rotation=0, ha="right", va="center", fontsize=8)
    axes[0].set_title(title or f"scan timeline (threshold {threshold:g})", fontsize=10, loc="left")
    if not rows:
        axes[1].text(0.5, 0.5, f"no label reaches the threshold {threshold:g}", ha="center", va="center",
                     transform=axes[1].transAxes)
        axes[1].set_yticks([])
    for row, (ax, index) in enumerate(zip(axes[1:], rows)):
        colour = colours(row % 10)
        for segment in (s for s in segments if s.label == result.labels[index]):
            ax.axvspan(segment.start, segment.end, ymin=0.05, ymax=0.95, color=colour,
                       alpha=0.25 + 0.6 * segment.confidence, lw=0)
        ax.plot(times, result.evidence[index], color="black", lw=0.8)
        ax.axhline(threshold, color="black", lw=0.5, ls=":")
        ax.set_ylim(0, 1.02)
        ax.set_yticks([])
        ax.set_ylabel(f"{result.labels[index]}\n{result.presence[index]:.2f}", rotation=0, ha="right",
                      va="center", fontsize=8)
    axes[-1].set_xlim(0, end)
    axes[-1].set_xlabel("time (s)   bars: segments (darker = more confident); line: evidence; dotted: threshold")
    fig.tight_layout()
    handle, temp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(handle)
    try:
        fig.savefig(temp, format="png")
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    finally:
        plt.close(fig)
    return path


# -- all formats at once -----------------------------------------------------------------------


def export(
    result: ScanResult,
    segments: Sequence[Segment],
    folder: str | os.PathLike,
    stem: str,
    threshold: float = DEFAULT_THRESHOLD,
    overwrite: bool = False,
    **extra,
) -> dict[str, Path]:
    """Write ``STEM.scan.json``, ``.segments.csv``, ``.labels.txt`` (Audacity) and ``.timeline.png``."""
    paths = export_paths(folder, stem, overwrite)
    _write_text_atomic(paths["json"], json.dumps(segments_json(result, segments, threshold, **extra), indent=1) + "\n")
    _write_text_atomic(paths["csv"], segments_csv(segments))
    _write_text_atomic(paths["audacity"], audacity_labels(segments))
    plot_timeline(result, segments, paths["timeline"], threshold, title=f"{stem}: what sounds when")
    return paths


def export_paths(folder: str | os.PathLike, stem: str, overwrite: bool = False) -> dict[str, Path]:
    """The export files' paths; refuses a missing folder or (without ``overwrite``) existing files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OmniSepError(f"cannot export the scan to {describe(folder)}: the folder does not exist")
    paths = {kind: folder / f"{stem}{suffix}" for kind, suffix in EXPORT_SUFFIXES.items()}
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise OmniSepError(f"{describe(path)} already exists; pass --overwrite to replace it.")
    return paths
