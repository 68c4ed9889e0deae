"""Tables shaped like the paper's (Markdown for reading, CSV for tools).

Reports are written only when a run is complete, each file atomically
(``omnisep.fileio``), so a table on disk is never a half-finished one. While a run is in progress its per-item scores go to a file
clearly named ``*.partial.jsonl``; it becomes ``scores.jsonl`` only at the end.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from omnisep import fileio
from omnisep.errors import OmniSepError, describe
from omnisep.evaluation.metrics import ItemScore, Summary, summarize

METRIC_TITLES = {
    "sdr": "SDR",
    "sir": "SIR",
    "sar": "SAR",
    "sdri": "SDRi",
    "si_sdr": "SI-SDR",
    "si_sdri": "SI-SDRi",
}
TABLE1_METRICS = ("sdr", "sir", "sar", "sdri")
CSV_METRICS = ("sdr", "sir", "sar", "sdri", "si_sdr", "si_sdri")


@dataclasses.dataclass
class ConditionResult:
    """All scores of one table row (a query mode, with or without a negative query, ...)."""

    name: str
    group: str
    scores: list[ItemScore]
    skipped: int = 0

    def summary(self, metric: str) -> Summary:
        return summarize([score.to_dict()[metric] for score in self.scores])


def format_mean_sem(summary: Summary) -> str:
    if summary.count == 0:
        return "–"
    if math.isnan(summary.sem):
        return f"{summary.mean:.2f}"
    return f"{summary.mean:.2f} ± {summary.sem:.2f}"


def format_number(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}"


def describe_sample(count: int, every: int = 1, whole_list: bool = False) -> str:
    """Which mixtures of a list a run scored, in words: "the first 120", "111, every 4th", or "480" for a
    whole list. The corpus's mixture lists are ordered by target class, so the words matter."""
    if every == 1:
        return str(count) if whole_list else f"the first {count}"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(every % 10 if every % 100 not in (11, 12, 13) else 0, "th")
    return f"{count}, every {every}{suffix}"


def markdown_table(
    title: str,
    results: Sequence[ConditionResult],
    metrics: Sequence[str] = TABLE1_METRICS,
    notes: Sequence[str] = (),
) -> str:
    """One table: a row per condition, grouped; per metric 'mean ± SEM' and median."""
    header = ["Method"]
    for metric in metrics:
        header += [f"Mean {METRIC_TITLES[metric]}", f"Med {METRIC_TITLES[metric]}"]
    header += ["scored", "skipped"]
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    current_group = None
    for result in results:
        if result.group != current_group:
            current_group = result.group
            lines.append(f"| *{current_group}* |" + " |" * (len(header) - 1))
        cells = [result.name]
        for metric in metrics:
            summary = result.summary(metric)
            cells += [format_mean_sem(summary), format_number(summary.median)]
        cells += [str(len(result.scores)), str(result.skipped)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Mean ± standard error of the mean (scipy.stats.sem) and median, in dB, over the scored items.")
    lines.extend(notes)
    return "\n".join(lines) + "\n"


def csv_table(results: Sequence[ConditionResult], metrics: Sequence[str] = CSV_METRICS) -> str:
    """Machine-readable twin of a table: full precision, one column per statistic."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["group", "method", "scored", "skipped"]
    for metric in metrics:
        header += [f"{metric}_mean", f"{metric}_sem", f"{metric}_median"]
    writer.writerow(header)
    for result in results:
        row = [result.group, result.name, len(result.scores), result.skipped]
        for metric in metrics:
            summary = result.summary(metric)
            row += [repr(summary.mean), repr(summary.sem), repr(summary.median)]
        writer.writerow(row)
    return buffer.getvalue()


@dataclasses.dataclass(frozen=True)
class AblationRun:
    """One row of Table 2: which modalities/mixup a model was trained with, and its scores."""

    name: str
    text: bool
    image: bool
    audio: bool
    mixup: bool
    tqss: Summary
    iqss: Summary
    # Per-mixture SDR of this run minus the reference run's on the same mixtures
    # (setting #5): paired, so its SEM is far smaller than the rows' own.
    tqss_vs_reference: Summary | None = None
    iqss_vs_reference: Summary | None = None

    @property
    def average(self) -> tuple[float, float]:
        """AVG SDR as the paper reports it: mean of the two means, ± mean of the two SEMs."""
        return (self.tqss.mean + self.iqss.mean) / 2, (self.tqss.sem + self.iqss.sem) / 2


def _signed(summary: Summary | None) -> str:
    if summary is None:
        return ""
    if summary.count == 0:
        return "n/a"
    return f"{summary.mean:+.2f} ± {summary.sem:.2f}"


def table2_markdown(runs: Sequence[AblationRun], notes: Sequence[str] = (), reference: str = "#5") -> str:
    paired = any(run.tqss_vs_reference is not None for run in runs)
    header = ["ID", "Text", "Image", "Audio", "MixUP", "TQSS Mean SDR", "TQSS Med SDR", "IQSS Mean SDR", "IQSS Med SDR", "AVG SDR"]
    if paired:
        header += [f"TQSS Δ vs {reference}", f"IQSS Δ vs {reference}"]
    lines = ["## Table 2: training modalities and Query-Mixup", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    tick = {True: "✓", False: ""}
    for run in runs:
        average, average_sem = run.average
        lines.append(
            "| "
            + " | ".join(
                [
                    run.name, tick[run.text], tick[run.image], tick[run.audio], tick[run.mixup],
                    format_mean_sem(run.tqss), format_number(run.tqss.median),
                    format_mean_sem(run.iqss), format_number(run.iqss.median),
                    format_mean_sem(Summary(average, average_sem, float("nan"), 1)),
                ]
                + ([_signed(run.tqss_vs_reference), _signed(run.iqss_vs_reference)] if paired else [])
            )
            + " |"
        )
    lines.append("")
    lines.append("AVG SDR: mean of the TQSS and IQSS mean SDRs ± mean of their SEMs (as in the paper).")
    if paired:
        lines.append(
            f"Δ vs {reference}: mean ± SEM over the test mixtures of (this run's SDR − {reference}'s SDR on the same "
            "mixture); the runs share their test mixtures, so this paired SEM is much smaller than the rows' own. "
            "One training seed per setting: the spread between seeds is not in them."
        )
    lines.extend(notes)
    return "\n".join(lines) + "\n"


def _paired_cells(summary: Summary | None) -> list[str]:
    return ["", ""] if summary is None else [repr(summary.mean), repr(summary.sem)]


def table2_csv(runs: Sequence[AblationRun]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "text", "image", "audio", "mixup", "tqss_mean", "tqss_sem", "tqss_median", "tqss_count",
                     "iqss_mean", "iqss_sem", "iqss_median", "iqss_count", "avg_mean", "avg_sem",
                     "tqss_vs_reference_mean", "tqss_vs_reference_sem", "iqss_vs_reference_mean", "iqss_vs_reference_sem"])
    for run in runs:
        writer.writerow([run.name, int(run.text), int(run.image), int(run.audio), int(run.mixup),
                         repr(run.tqss.mean), repr(run.tqss.sem), repr(run.tqss.median), run.tqss.count,
                         repr(run.iqss.mean), repr(run.iqss.sem), repr(run.iqss.median), run.iqss.count,
                         *(repr(v) for v in run.average),
                         *_paired_cells(run.tqss_vs_reference), *_paired_cells(run.iqss_vs_reference)])
    return buffer.getvalue()


def sweep_csv(sweep: Mapping[tuple[str, str], Sequence[tuple[float, Summary]]]) -> str:
    """Alpha sweep: one row per (query modality, negative mode, alpha)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["modality", "negative_mode", "alpha", "sdr_mean", "sdr_sem", "sdr_median", "count"])
    for (modality, mode), points in sweep.items():
        for alpha, summary in points:
            writer.writerow([modality, mode, repr(float(alpha)), repr(summary.mean), repr(summary.sem), repr(summary.median), summary.count])
    return buffer.getvalue()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole file or nothing: a reader never sees a half-written report."""
    with fileio.output_errors(path):
        fileio.write_text(path, text)


class ScoreLog:
    """Per-item scores of a run in progress, in a file that says it is partial.

    Every line is flushed as it is written, so an interrupted run leaves a
    readable ``scores.partial.jsonl`` and no final file; ``finish()`` turns it
    into ``scores.jsonl`` in one rename.
    """

    PARTIAL_NAME = "scores.partial.jsonl"
    FINAL_NAME = "scores.jsonl"

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.partial_path = self.out_dir / self.PARTIAL_NAME
        self.final_path = self.out_dir / self.FINAL_NAME
        self._handle = open(self.partial_path, "w", encoding="utf-8")

    def write(self, record: Mapping) -> None:
        self._handle.write(json.dumps(record, sort_keys=True, allow_nan=True) + "\n")
        self._handle.flush()

    def finish(self) -> Path:
        self._handle.close()
        fileio.commit(self.partial_path, self.final_path)  # one rename, the umask's permissions
        return self.final_path

    def close(self) -> None:
        """Stop writing without declaring the run complete (the partial file stays)."""
        if not self._handle.closed:
            self._handle.close()


MIXTURE_ROW = "mixture"  # read_item_scores' row of the unprocessed mixture


def read_item_scores(path: str | os.PathLike) -> dict[tuple[str, str], dict[str, float]]:
    """A finished run's ``scores.jsonl`` as ``{(mixture id, row): {metric: value}}``.

    Row ``"mixture"`` is the unprocessed mixture; a row skipped for an item
    (near-silent, or the item lacks that query's modality) is absent.
    """
    path = Path(path)
    if not path.is_file():
        raise OmniSepError(f"Per-item scores {describe(path)} do not exist; the evaluation did not finish.")
    scores = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        scores[(record["mixture_id"], MIXTURE_ROW)] = record["mixture_score"]
        for row, values in record["scores"].items():
            if values:
                scores[(record["mixture_id"], row)] = values
    return scores


def write_tables(out_dir: str | os.PathLike, stem: str, title: str, results: Sequence[ConditionResult],
                 metrics: Sequence[str] = TABLE1_METRICS, notes: Iterable[str] = ()) -> tuple[Path, Path]:
    """Write ``{stem}.md`` and ``{stem}.csv`` (each atomically)."""
    out_dir = Path(out_dir)
    markdown_path, csv_path = out_dir / f"{stem}.md", out_dir / f"{stem}.csv"
    atomic_write_text(markdown_path, markdown_table(title, results, metrics, list(notes)))
    atomic_write_text(csv_path, csv_table(results))
    return markdown_path, csv_path


def write_evaluation_reports(out_dir: str | os.PathLike, result, run_info: Mapping) -> list[Path]:
    """Every final file of a completed run: Table 1 (and 3), the sweep CSV and Fig. 2, summary.json.

    ``result`` is a finished :class:`omnisep.evaluation.protocol.EvaluationResult`.
    """
    from omnisep.plotting.sweep import plot_alpha_sweep

    out_dir = Path(out_dir)
    notes = [
        "",
        f"Checkpoint: `{run_info.get('checkpoint')}`; test set: `{run_info.get('test_set')}` "
        f"({result.items} mixtures, {result.skipped_items} skipped as near-silent); metrics backend: {run_info.get('backend')}.",
        "SDR/SIR/SAR: BSSEval v4 as museval defines them (the fast backend gives the same numbers), one window over "
        f"the first {run_info.get('length', 65280):,} samples, target vs [target, interferer], capped at 100 dB; "
        "SDRi = SDR − SDR of the unprocessed mixture.",
    ]
    written = list(write_tables(out_dir, "table1", "Table 1: separation by query mode", result.table1, TABLE1_METRICS, notes))
    if result.table3:
        written += write_tables(out_dir, "table3", "Table 3: class labels vs free-form descriptions, with and without Query-Aug",
                                result.table3, ("sdr", "sdri"), notes)
    if result.sweep:
        sweep_path = out_dir / "alpha_sweep.csv"
        atomic_write_text(sweep_path, sweep_csv(result.sweep))
        written.append(sweep_path)
        written.append(plot_alpha_sweep(result.sweep, out_dir / "fig2_alpha_sweep.png"))
    summary = {
        "run": dict(run_info),
        "items": result.items,
        "skipped_items": result.skipped_items,
        "seconds": result.seconds,
        "table1": {r.name: {m: r.summary(m).to_dict() for m in CSV_METRICS} | {"skipped": r.skipped} for r in result.table1},
        "table3": {r.name: {m: r.summary(m).to_dict() for m in CSV_METRICS} | {"skipped": r.skipped} for r in result.table3},
        "alpha_sweep": {f"{modality}/{mode}": [[alpha, s.to_dict()] for alpha, s in points]
                        for (modality, mode), points in result.sweep.items()},
    }
    summary_path = out_dir / "summary.json"
    atomic_write_text(summary_path, json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    written.append(summary_path)
    return written
