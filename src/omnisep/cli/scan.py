"""`omnisep scan`: which of the model's labels sound in a recording, and when."""

from __future__ import annotations

import json
from pathlib import Path

import click

from omnisep.scan import DEFAULT_FRAME_SECONDS, DEFAULT_THRESHOLD


def _format_segments(segments: list[tuple[float, float]], limit: int = 4) -> str:
    text = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in segments[:limit])
    if len(segments) > limit:
        text += f" (+{len(segments) - limit} more)"
    return text or "-"


def _print_table(result, threshold: float, top: int, source: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{source}: {result.duration:.1f} s, {len(result.labels)} labels scanned")
    table.add_column("label")
    table.add_column("presence", justify="right")
    table.add_column("present", justify="center")
    table.add_column(f"when (ratio >= {threshold:g})")
    for index in result.ranking()[:top]:
        present = result.presence[index] >= threshold
        table.add_row(
            result.labels[index],
            f"{result.presence[index]:.2f}",
            "yes" if present else "",
            _format_segments(result.segments(index, threshold)),
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
@click.option("--threshold", default=DEFAULT_THRESHOLD, show_default=True, type=click.FloatRange(0, 1),
              help="Share of the mixture's energy from which a label counts as present.")
@click.option("--frame-seconds", default=DEFAULT_FRAME_SECONDS, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Length of the time frames.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(1), help="Rows in the table and the plot.")
def scan(input_path, model, as_json, plot, threshold, frame_seconds, top):
    """Find which labels of the model's query bank are present in INPUT, and when.

    Every label is separated at once (one U-Net pass per chunk); a label's
    presence is the share of the mixture's energy its separation keeps
    (0.9 quantile over the audible frames).

    \b
    Examples:
      omnisep scan street.wav
      omnisep scan street.wav --json > street.json
      omnisep scan street.wav --plot street_scan.png --threshold 0.4
    """
    from omnisep.audio import load_audio
    from omnisep.pretrained import resolve_model
    from omnisep.plotting import check_png_path
    from omnisep.plotting.scan import plot_scan
    from omnisep.scan import scan as run_scan
    from omnisep.states import load_checkpoint

    if plot is not None:
        check_png_path(plot)
    # Only the model and its bank are needed: no query encoder to load.
    checkpoint = load_checkpoint(resolve_model(model))
    audio, rate = load_audio(input_path)
    result = run_scan(checkpoint, audio, rate, frame_seconds=frame_seconds)
    if plot is not None:
        plot_scan(result, plot, threshold=threshold, max_labels=top, title=f"{input_path.name}: share of the mixture's energy per label")
    if as_json:
        summary = {"input": str(input_path), "model": model, **result.to_dict(threshold)}
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_table(result, threshold, top, input_path.name)
    if plot is not None:
        click.echo(f"wrote {plot}", err=True)
