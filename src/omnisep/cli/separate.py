"""`omnisep separate`: files in, ``DIR/<input>/<query>/target.wav`` and ``residual.wav`` out."""

from __future__ import annotations

import glob
import json
import re
import sys
import warnings
from pathlib import Path

import click

from omnisep import modalities
from omnisep.apply import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS
from omnisep.errors import OmniSepError, describe

BITS = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
PLOT_NAME = "spectrogram.png"


def slugify(label: str, limit: int = 60) -> str:
    """A folder name from a query's description: ``Dog barking - speech`` -> ``dog-barking-minus-speech``."""
    text = label.lower().replace(" + ", " plus ").replace("- ", "minus ")
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return slug[:limit].rstrip("-") or "query"


def expand_inputs(patterns: tuple[str, ...]) -> list[Path]:
    """Paths as given, folders as their audio/video files, and glob patterns (for shells that do not expand them)."""
    from omnisep.audio import SUPPORTED_SUFFIXES

    paths: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
            if not found:
                raise OmniSepError(f"folder {describe(path)} holds no audio or video file.")
            paths += found
        elif not path.exists() and glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not found:
                raise OmniSepError(f"the pattern {describe(pattern)} matches no file.")
            paths += found
        else:
            paths.append(path)
    unique = list(dict.fromkeys(paths))
    stems: dict[str, Path] = {}
    for path in unique:
        if path.stem in stems:
            raise OmniSepError(
                f"inputs {describe(stems[path.stem])} and {describe(path)} would both write to a folder named "
                f"{path.stem!r}; rename one or separate them in two runs."
            )
        stems[path.stem] = path
    return unique


def parse_weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise OmniSepError(f"--weights {text!r} must be numbers separated by commas, e.g. 2,2,1.") from None


class _CliWarnings:
    """Warnings as ``omnisep: warning: ...`` lines on stderr (not Python's file:line form)."""

    def __enter__(self):
        self._context = warnings.catch_warnings()
        self._context.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *args, **kwargs: click.echo(f"omnisep: warning: {message}", err=True)
        return self

    def __exit__(self, *exc):
        self._context.__exit__(*exc)


def _modality_options(negative: bool):
    """One repeatable option per query modality (``--text``, ... or ``--negative-text``, ...), in table order."""

    def decorate(command):
        for modality in reversed(modalities.ALL):  # decorators apply bottom-up; help lists them top-down
            flag = modality.negative_cli_flag if negative else modality.cli_flag
            command = click.option(
                flag, _parts_key(modality, negative), multiple=True, metavar=modality.metavar,
                help=modality.negative_help if negative else modality.help,
            )(command)
        return command

    return decorate


def _parts_key(modality, negative: bool) -> str:
    return f"{modality.negative_keyword if negative else modality.name}_parts"


EXAMPLES = """
\b
Examples:
  omnisep separate street.wav --text "dog barking"
  omnisep separate song.mp3 --image violin.png --negative-text "singing"
  omnisep separate street.wav --text "dog barking" --negative auto
  omnisep separate clip.mp4 --text "siren" --audio siren_sample.wav --weights 2,1
  omnisep separate recordings/ --text "speech" --text "music" --each --format flac
  omnisep separate "takes/*.wav" --text "guitar" --query-aug --plot --json
"""


@click.command("separate", epilog=EXAMPLES)
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@_modality_options(negative=False)
@click.option("--weights", metavar="W1,W2,..",
              help=f"Weights of the query parts in the order {', '.join(m + 's' for m in modalities.MODALITIES)} (default: equal).")
@click.option("--each", is_flag=True,
              help=f"Separate every {'/'.join(m.cli_flag for m in modalities.ALL)} on its own (all in one model pass) "
                   "instead of mixing them into one query.")
@_modality_options(negative=True)
@click.option("--negative", "negative", type=click.Choice(["auto"]), default=None,
              help="auto: scan each input and subtract the strongest other labels the model knows (reported).")
@click.option("--negative-labels", default=None, type=click.IntRange(min=1), metavar="N",
              help="With --negative auto: how many labels to subtract (default: chosen on validation data).")
@click.option("--alpha", default=0.5, show_default=True, type=click.FloatRange(min=0),
              help="Strength of the negative query (--negative auto: 0.25 unless given).")
@click.option("--naive-negative", is_flag=True, help="Use q - a*neg (the paper's baseline) instead of (1+a)q - a*neg.")
@click.option("--query-aug", is_flag=True, help="Snap the query to the closest label the model was trained on (Query-Aug).")
@click.option("-o", "--output-dir", default="separated", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write DIR/<input>/<query>/target and residual.")
@click.option("--model", default="default", show_default=True, help="Model name (see `omnisep models`) or checkpoint folder.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"]))
@click.option("--format", "file_format", default="wav", show_default=True, type=click.Choice(["wav", "flac"]))
@click.option("--bits", default="16", show_default=True, type=click.Choice(list(BITS)), help="Sample format of the outputs.")
@click.option("--downmix", is_flag=True, help="Separate the channels' average (mono outputs) instead of each channel.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--plot", is_flag=True, help=f"Also write {PLOT_NAME} (mixture, target, residual) beside the outputs.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout (no progress bar).")
@click.option("--chunk-seconds", default=DEFAULT_CHUNK_SECONDS, show_default=True, type=click.FloatRange(min=1),
              help="Audio separated per model pass; smaller uses less memory.")
@click.option("--overlap", default=DEFAULT_OVERLAP_SECONDS, show_default=True, type=click.FloatRange(min=0),
              help="Context in seconds on each side of a chunk (half of it is cross-faded).")
def separate(
    inputs, weights, each, negative, negative_labels, alpha, naive_negative, query_aug, output_dir, model, device,
    file_format, bits, downmix, overwrite, plot, as_json, chunk_seconds, overlap, **parts,
):
    """Separate the sound a query describes from each INPUT (audio or video files, folders, or glob patterns).

    The query is text, images, example recordings, or a weighted mix of them
    (--weights); --negative-* names sounds to leave out. Each input gets
    DIR/<input name>/<query>/target.wav (what the query describes) and
    residual.wav (everything else); target + residual equals the input.
    Files of any length are processed in chunks with flat memory.
    """
    from omnisep.api import Query

    positive = {m.name: list(parts[_parts_key(m, False)]) for m in modalities.ALL}
    if not any(positive.values()):
        raise click.UsageError(f"give at least one query: {modalities.listing()}.")
    if each and weights:
        raise click.UsageError("--weights mixes the parts of one query; it cannot be used with --each.")
    if file_format == "flac" and bits == "float":
        raise click.UsageError("FLAC stores integer samples only: use --bits 16 or 24, or --format wav.")
    negatives = {m.negative_keyword: list(parts[_parts_key(m, True)]) or None for m in modalities.ALL}
    if negative_labels is not None and negative != "auto":
        raise click.UsageError("--negative-labels chooses how many labels --negative auto subtracts; add --negative auto.")
    if negative == "auto" and any(negatives.values()):
        raise click.UsageError("--negative auto chooses the negative query itself; drop the --negative-<modality> options.")
    negatives.update(alpha=alpha, negative_mode="naive" if naive_negative else "proportional", query_aug=query_aug,
                     auto_negative=_auto_negative(negative, negative_labels, _given(alpha, "alpha")))
    if each:
        queries = [Query(**{name: item}, **negatives) for name, items in positive.items() for item in items]
    else:
        queries = [Query(**{name: items or None for name, items in positive.items()}, weights=parse_weights(weights),
                         **negatives)]
    slugs = [slugify(query.describe()) for query in queries]
    if len(set(slugs)) != len(slugs):
        raise OmniSepError(f"two queries would write to the same folder ({', '.join(slugs)}); make them distinct.")

    with _CliWarnings():
        results = _run(expand_inputs(inputs), queries, slugs, output_dir, model, device, file_format, BITS[bits],
                       downmix, overwrite, plot, as_json, chunk_seconds, overlap)
    if as_json:
        click.echo(json.dumps(results, indent=2))


def _given(value, name):
    """The option's value when the user typed it, else None (the automatic negative has its own default alpha)."""
    from click.core import ParameterSource

    return value if click.get_current_context().get_parameter_source(name) == ParameterSource.COMMANDLINE else None


def _auto_negative(negative, count, alpha):
    if negative != "auto":
        return None
    import dataclasses

    from omnisep.negatives import AutoNegative

    setting = AutoNegative() if count is None else AutoNegative(count=count)
    return setting if alpha is None else dataclasses.replace(setting, alpha=alpha)


def _planned_outputs(inputs, slugs, output_dir, suffix, plot):
    plan = {}
    for path in inputs:
        folders = [output_dir / path.stem / slug for slug in slugs]
        plan[path] = {
            "targets": [folder / f"target{suffix}" for folder in folders],
            "residuals": [folder / f"residual{suffix}" for folder in folders],
            "plots": [folder / PLOT_NAME for folder in folders] if plot else [],
        }
    return plan


def _run(inputs, queries, slugs, output_dir, model, device, file_format, subtype, downmix, overwrite, plot, as_json,
         chunk_seconds, overlap):
    from omnisep.api import Separator
    from omnisep.audio import AudioReader

    # Every check that needs no model comes first: a typo fails in a second, not after loading.
    readers = {}
    for path in inputs:
        reader = AudioReader(path)
        readers[path] = (reader.sample_rate, reader.channels, reader.duration_estimate)
        reader.close()
    plan = _planned_outputs(inputs, slugs, output_dir, f".{file_format}", plot)
    if not overwrite:
        for outputs in plan.values():
            for output in outputs["targets"] + outputs["residuals"] + outputs["plots"]:
                if output.exists():
                    raise OmniSepError(f"{describe(output)} already exists; pass --overwrite to replace it.")

    separator = Separator(model, device=device)
    embedded = separator.prepare(queries)  # once for all inputs
    progress = None if as_json else _progress_bar()
    results = []
    try:
        for path in inputs:
            rate, channels, duration = readers[path]
            task = None
            if progress is not None and progress.live.console.is_terminal:
                total = round(duration * rate) if duration else None
                task = progress.add_task(path.name, total=total)
            outputs = plan[path]
            rows = separator.separate_file(
                path, embedded, outputs["targets"], outputs["residuals"], subtype=subtype, overwrite=overwrite,
                downmix=downmix, chunk_seconds=chunk_seconds, overlap=overlap,
                on_input=(lambda n, task=task: progress.advance(task, n)) if task is not None else None,
            )
            if plot:
                from omnisep.plotting.spectrograms import file_spectrogram

                mixture = file_spectrogram(path)
                for row, plot_path in zip(rows, outputs["plots"]):
                    _plot(path.name, mixture, row, plot_path)
                    row["plot"] = str(plot_path)
            if task is not None:
                progress.remove_task(task)
            if progress is not None:
                for row in rows:
                    progress.console.print(f"[bold]{path.name}[/]: {row['query']} -> {Path(row['target']).parent}")
            results.append({
                "input": str(path),
                "sample_rate": rate,
                "channels": 1 if downmix else channels,
                "outputs": rows,
            })
    finally:
        if progress is not None:
            progress.stop()
    return {"model": str(separator.path), "encoder": separator.encoder.name, "results": results}


def _progress_bar():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=sys.stderr), transient=True,
    )
    progress.start()
    return progress


def _plot(title, mixture, row, plot_path):
    from omnisep.plotting.spectrograms import file_spectrogram, plot_separation

    panels = [
        ("mixture", mixture),
        (f"target: {row['query']}", file_spectrogram(row["target"])),
        ("residual", file_spectrogram(row["residual"])),
    ]
    plot_separation(plot_path, panels, title=title)
