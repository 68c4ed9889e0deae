"""`omnisep scan`: which of the model's labels sound in a recording, and when."""

from __future__ import annotations

import json
from pathlib import Path

import click

from omnisep.scan import DEFAULT_FRAME_SECONDS, DEFAULT_THRESHOLD


class _progress:
    """A rich progress bar on stderr while the file is scanned (only on a terminal)."""

    def __init__(self, name: str, total: int | None, enabled: bool):
        self.name, self.total, self.enabled = name, total, enabled
        self.bar = None

    def __enter__(self):
        import sys

        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = Console(file=sys.stderr)
        if not (self.enabled and console.is_terminal):
            return lambda n: None
        self.bar = Progress(TextColumn("scan {task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
        self.bar.start()
        task = self.bar.add_task(self.name, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def _format_segments(segments: list[tuple[float, float]], limit: int = 4) -> str:
    text = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in segments[:limit])
    if len(segments) > limit:
        text += f" (+{len(segments) - limit} more)"
    return text or "-"


def _print_table(result, threshold: float, top: int, source: str, min_seconds: float = 0.0, merge_gap: float = 0.0) -> None:
    from omnisep.segments import label_segments

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{source}: {result.duration:.1f} s, {len(result.labels)} labels scanned")
    table.add_column("label")
    table.add_column("presence", justify="right")
    table.add_column("present", justify="center")
    table.add_column(f"when (evidence >= {threshold:g})")
    for index in result.ranking()[:top]:
        present = result.presence[index] >= threshold
        table.add_row(
            result.labels[index],
            f"{result.presence[index]:.2f}",
            "yes" if present else "",
            _format_segments([(x.start, x.end) for x in label_segments(result, index, threshold, min_seconds, merge_gap)]),
            style=None if present else "dim",
        )
    console = Console()
    console.print(table)
    if not any(result.presence >= threshold):
        console.print(f"No label reaches the threshold {threshold:g}.")


@click.command("scan")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", default="default", show_default=True, help="Bundled model name or checkpoint folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON instead of a table.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write a time x label heat map (.png).")
@click.option("--threshold", default=None, type=click.FloatRange(0, 1),
              help="Share of the mixture's energy from which a label counts as present "
                   "[default: the model's, chosen on validation; 0.425 for models that record none].")
@click.option("--frame-seconds", default=DEFAULT_FRAME_SECONDS, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Length of the time frames.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(1), help="Rows in the table and the plot.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write INPUT.scan.json, .segments.csv, .labels.txt (Audacity label track) and .timeline.png there.")
@click.option("--min-seconds", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Drop segments shorter than this.")
@click.option("--merge-gap", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Join segments of a label separated by at most this many seconds.")
@click.option("--overwrite", is_flag=True, help="Replace existing --export files.")
@click.option("--no-verify", is_flag=True,
              help="Skip the model's verification (the sound tagger and/or the query encoder listening to the "
                   "separated audio; ranks less well; models that record no verification never verify).")
def scan(input_path, model, as_json, plot, threshold, frame_seconds, top, export_dir, min_seconds, merge_gap, overwrite,
         no_verify):
    """Find which labels of the model's query bank are present in INPUT, and when.

    Every label is separated at once (one U-Net pass per chunk); a label's
    evidence is the share of the mixture's energy its separation keeps. The
    model's verification then weighs it, 4 s at a time: the sound tagger's
    probability that the label sounds there (the default model), or the query
    encoder listening to the separated audio of the most likely labels.
    Presence: the 0.9 quantile of the evidence over the audible frames.

    \b
    Examples:
      omnisep scan street.wav
      omnisep scan street.wav --json > street.json
      omnisep scan street.wav --plot street_scan.png --threshold 0.4
      omnisep scan field_recording.flac --export scans/    # JSON, CSV, Audacity labels, timeline

    The file is streamed (flat memory, any length); a progress bar shows on a terminal.
    """
    from omnisep.audio import AudioReader
    from omnisep.pretrained import resolve_model
    from omnisep.plotting import check_png_path
    from omnisep.plotting.scan import plot_scan
    from omnisep.scan import scan_file, verification_for
    from omnisep.segments import export, export_paths, find_segments
    from omnisep.states import load_checkpoint, scan_threshold

    if plot is not None:
        check_png_path(plot)
    if export_dir is not None:
        export_paths(export_dir, input_path.stem, overwrite)  # refuse before minutes of work
    reader = AudioReader(input_path)  # a bad file fails before the model loads
    total = round(reader.duration_estimate * reader.sample_rate) if reader.duration_estimate else None
    reader.close()
    # The model and its bank; the query encoder only when the model verifies (verification_for loads it).
    model_path = resolve_model(model)
    checkpoint = load_checkpoint(model_path)
    verification = None if no_verify else verification_for(checkpoint, model_path)
    if threshold is None:  # the model's own, chosen on validation (DEFAULT_THRESHOLD for models that record none)
        threshold = scan_threshold(checkpoint.config, model_path, DEFAULT_THRESHOLD, verified=verification is not None)
    with _progress(input_path.name, total, enabled=not as_json) as advance:
        result = scan_file(checkpoint, input_path, frame_seconds=frame_seconds, on_input=advance,
                           verify=verification or False)
    if export_dir is not None:
        segments = find_segments(result, threshold, min_seconds, merge_gap)
        paths = export(result, segments, export_dir, input_path.stem, threshold, overwrite, input=str(input_path), model=model)
        click.echo(f"wrote {len(segments)} segments to {', '.join(str(p) for p in paths.values())}", err=True)
    if plot is not None:
        plot_scan(result, plot, threshold=threshold, max_labels=top, title=f"{input_path.name}: evidence per label")
    if as_json:
        summary = {"input": str(input_path), "model": model, **result.to_dict(threshold)}
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_table(result, threshold, top, input_path.name, min_seconds, merge_gap)
    if plot is not None:
        click.echo(f"wrote {plot}", err=True)
