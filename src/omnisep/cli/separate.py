"""`omnisep separate`: files in, ``DIR/<input>/<query>/target.wav`` and ``residual.wav`` out."""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from pathlib import Path

import click

from omnisep import modalities
from omnisep.apply import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS
from omnisep.errors import OmniSepError, describe
from omnisep.states import AUTO_SOURCES

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
        name = folder_name(path)
        if name in stems:
            raise OmniSepError(
                f"inputs {describe(stems[name])} and {describe(path)} would both write to a folder named "
                f"{name!r}; rename one or separate them in two runs."
            )
        stems[name] = path
    return unique


def folder_name(path: Path) -> str:
    """The output folder of an input: its stem, made safe.

    Stems such as ``..`` (from ``...wav``) or ``.`` (from ``..wav``) would
    point outside or at the output folder itself: their dots become ``_``.
    """
    stem = path.stem
    if stem.strip(".") == "" or "/" in stem or "\\" in stem:
        stem = re.sub(r"[./\\]", "_", stem) or "_"
    return stem


def parse_shard(text: str | None) -> tuple[int, int]:
    """``--shard I/N`` (I from 0), else torchrun's ``$RANK``/``$WORLD_SIZE``, else ``(0, 1)``."""
    if text is None:
        rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
        source = "$RANK/$WORLD_SIZE"
    else:
        rank, _, world = text.partition("/")
        source = f"--shard {text!r}"
    try:
        rank, world = int(rank), int(world)
    except ValueError:
        raise OmniSepError(f"{source} must be two whole numbers I/N, e.g. --shard 0/4.") from None
    if world < 1 or not 0 <= rank < world:
        raise OmniSepError(f"{source} must satisfy 0 <= I < N (shards are numbered from 0), e.g. --shard 0/4.")
    return rank, world


def parse_weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise OmniSepError(f"--weights {text!r} must be numbers separated by commas, e.g. 2,2,1.") from None


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
              help="auto: find the strongest other sounds the model knows in each input and subtract them (reported).")
@click.option("--negative-labels", default=None, type=click.IntRange(min=1), metavar="N",
              help="With --negative auto: how many labels to subtract (default: chosen on validation data).")
@click.option("--negative-from", "negative_from", default=None, type=click.Choice(list(AUTO_SOURCES)),
              help="With --negative auto: scan: the labels the scan finds most present; residual: the labels nearest "
                   "to what the query alone leaves; scan+residual: both summed per label; residual-tagger: the labels "
                   "the sound tagger hears most in what the query alone leaves; scan*residual-tagger: that times the "
                   "scan's presence per label "
                   "[default: the model's; `omnisep models` lists it].")
@click.option("--alpha", default=None, type=click.FloatRange(min=0),
              help="Strength of the negative query [default: the model's; `omnisep models` lists it].")
@click.option("--negative-mode", default=None, type=click.Choice(["proportional", "naive", "logit"]),
              help="proportional: (1+a)q - a*neg; naive: q - a*neg (the paper's baseline); logit: the masks' logits "
                   "(1+a)*L(q) - a*L(neg) [default: the model's].")
@click.option("--naive-negative", is_flag=True, help="Same as --negative-mode naive.")
@click.option("--contrast", default=None, type=click.FloatRange(min=0), metavar="B",
              help="Query contrast: (1+B) L(q) - B L(background), what the query claims more than sound in general "
                   "does; 0 turns it off [default: the model's].")
@click.option("--no-second-look", "no_second_look", is_flag=True,
              help="One pass only: do not separate again a query's output that holds little of the input's energy "
                   "(the model's second look, which makes an absent sound quieter; `omnisep models` lists it).")
@click.option("--query-aug/--no-query-aug", default=None,
              help="Snap the query to the closest label the model was trained on (Query-Aug); a query of pictures "
                   "only, or of one text that is not a class name, gets it unless --no-query-aug [default: on for "
                   "pictures and for one text, off for compositions].")
@click.option("-o", "--output-dir", default="separated", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write DIR/<input>/<query>/target and residual.")
@click.option("--model", default="default", show_default=True, help="Model name (see `omnisep models`) or checkpoint folder.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"]))
@click.option("--format", "file_format", default="wav", show_default=True, type=click.Choice(["wav", "flac"]))
@click.option("--bits", default="16", show_default=True, type=click.Choice(list(BITS)), help="Sample format of the outputs.")
@click.option("--downmix", is_flag=True, help="Separate the channels' average (mono outputs) instead of each channel.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--skip-existing", is_flag=True,
              help="Skip inputs whose outputs all exist (rerun a large job with this to resume it).")
@click.option("--shard", metavar="I/N", default=None,
              help="Separate only every N-th input from the I-th (I from 0), for several processes or machines; "
                   "default: torchrun's $RANK/$WORLD_SIZE.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append one JSON line per input (done, skipped or refused, with the reason) to this file; "
                   "with shards, one file per shard (NAME.shard-I-of-N.jsonl).")
@click.option("--plot", is_flag=True, help=f"Also write {PLOT_NAME} (mixture, target, residual) beside the outputs.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout (no progress bar).")
@click.option("--chunk-seconds", default=DEFAULT_CHUNK_SECONDS, show_default=True, type=click.FloatRange(min=1),
              help="Audio separated per model pass; smaller uses less memory.")
@click.option("--overlap", default=DEFAULT_OVERLAP_SECONDS, show_default=True, type=click.FloatRange(min=0),
              help="Context in seconds on each side of a chunk (half of it, at most half a chunk, is cross-faded).")
def separate(
    inputs, weights, each, negative, negative_labels, negative_from, alpha, negative_mode, naive_negative, contrast, no_second_look,
    query_aug, output_dir, model, device, file_format, bits, downmix, overwrite, skip_existing, shard, log_path, plot, as_json,
    chunk_seconds, overlap, **parts,
):
    """Separate the sound a query describes from each INPUT (audio or video files, folders, or glob patterns).

    The query is text, images, example recordings, or a weighted mix of them
    (--weights); --negative-* names sounds to leave out. Each input gets
    DIR/<input name>/<query>/target.wav (what the query describes) and
    residual.wav (everything else); target + residual equals the input.
    Files of any length are processed in chunks with flat memory.

    With many inputs, one that cannot be read is reported and skipped (exit
    code 2 at the end); --skip-existing resumes an interrupted job, --shard
    splits it over processes, --log records every input's outcome.
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
    if negative_from is not None and negative != "auto":
        raise click.UsageError("--negative-from chooses where --negative auto finds its labels; add --negative auto.")
    if negative == "auto" and any(negatives.values()):
        raise click.UsageError("--negative auto chooses the negative query itself; drop the --negative-<modality> options.")
    if naive_negative and negative_mode not in (None, "naive"):
        raise click.UsageError(f"--naive-negative contradicts --negative-mode {negative_mode}.")
    negatives.update(alpha=alpha, negative_mode="naive" if naive_negative else negative_mode, contrast=contrast,
                     query_aug=query_aug,
                     auto_negative=_auto_negative(negative, negative_labels, alpha, negative_from))
    if each:
        queries = [Query(**{name: item}, **negatives) for name, items in positive.items() for item in items]
    else:
        queries = [Query(**{name: items or None for name, items in positive.items()}, weights=parse_weights(weights),
                         **negatives)]
    slugs = [slugify(query.describe()) for query in queries]
    if len(set(slugs)) != len(slugs):
        raise OmniSepError(f"two queries would write to the same folder ({', '.join(slugs)}); make them distinct.")

    if overwrite and skip_existing:
        raise click.UsageError("--overwrite and --skip-existing contradict each other; choose one.")
    rank, world = parse_shard(shard)
    paths = expand_inputs(inputs)[rank::world]
    if log_path is not None and world > 1:
        log_path = log_path.with_name(f"{log_path.stem}.shard-{rank}-of-{world}{log_path.suffix or '.jsonl'}")
    with _JobLog(log_path) as log:
        results = _run(paths, queries, slugs, output_dir, model, device, file_format, BITS[bits], downmix, overwrite,
                       skip_existing, plot, as_json, chunk_seconds, overlap, log, second_look=not no_second_look)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    refused = results["refused"]
    if refused:
        if len(paths) == 1:
            raise _AlreadyReported()
        if len(refused) == len(paths):
            raise OmniSepError(f"all {len(paths)} inputs were refused (each named above).")
        others = "separated or skipped (already done)" if results["skipped"] else "separated"
        raise OmniSepError(f"{len(refused)} of {len(paths)} inputs were refused (each named above); the others were {others}.")


class _AlreadyReported(OmniSepError):
    """The one refused input was already named on stderr: exit 2 without a second line."""


class _JobLog:
    """``--log``: one JSON line per input, flushed as written, so a killed job's log is readable."""

    def __init__(self, path: Path | None):
        self.path = path
        self._handle = None

    def __enter__(self):
        if self.path is not None:
            from omnisep.fileio import output_errors

            with output_errors(self.path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = open(self.path, "a", encoding="utf-8")
        return self

    def write(self, path: Path, status: str, started: float, message: str | None = None, outputs=None) -> None:
        if self._handle is None:
            return
        import time

        record = {"input": str(path), "status": status, "message": message, "outputs": outputs or [],
                  "seconds": round(time.monotonic() - started, 3),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def __exit__(self, *exc):
        if self._handle is not None:
            self._handle.close()


def _auto_negative(negative, count, alpha, source=None):
    if negative != "auto":
        return None
    from omnisep.negatives import AutoNegative

    return AutoNegative(count=count, alpha=alpha, source=source)


def _planned_outputs(inputs, slugs, output_dir, suffix, plot):
    plan = {}
    root = Path(os.path.abspath(output_dir))
    for path in inputs:
        folders = [output_dir / folder_name(path) / slug for slug in slugs]
        plan[path] = {
            "targets": [folder / f"target{suffix}" for folder in folders],
            "residuals": [folder / f"residual{suffix}" for folder in folders],
            "plots": [folder / PLOT_NAME for folder in folders] if plot else [],
        }
        for folder in folders:  # folder_name and slugify make this hold; checked, not assumed
            if Path(os.path.abspath(folder)).parent.parent != root:
                raise OmniSepError(f"the outputs of {describe(path)} would be written outside {describe(output_dir)}.")
    return plan


def _refuse(path, error, log, started):
    click.echo(f"omnisep: error: {error}", err=True)
    log.write(path, "refused", started, str(error))
    return {"input": str(path), "error": str(error)}


def _run(inputs, queries, slugs, output_dir, model, device, file_format, subtype, downmix, overwrite, skip_existing,
         plot, as_json, chunk_seconds, overlap, log, second_look=True):
    import time

    from omnisep.api import Separator, check_outputs
    from omnisep.audio import AudioReader
    from omnisep.fileio import clean_stale_partials

    plan = _planned_outputs(inputs, slugs, output_dir, f".{file_format}", plot)
    # Every check that needs no model comes first: a typo fails in a second, not after loading.
    # A bad input is reported and dropped; the others go on.
    readers, refused, skipped = {}, [], []
    for path in inputs:
        started = time.monotonic()
        outputs = plan[path]
        files = outputs["targets"] + outputs["residuals"] + outputs["plots"]
        try:
            check_outputs(path, files)
            for output in files:
                clean_stale_partials(output)  # left by a killed run
            existing = [output for output in files if output.exists()]
            if existing and not overwrite:
                if skip_existing and len(existing) == len(files):
                    skipped.append(str(path))
                    log.write(path, "skipped", started, "all outputs exist", [str(f) for f in files])
                    continue
                hint = "pass --overwrite to replace it" + (" (or --skip-existing to skip finished inputs)"
                                                          if len(inputs) > 1 else "")
                raise OmniSepError(f"{describe(existing[0])} already exists; {hint}.")
            with AudioReader(path) as reader:
                readers[path] = (reader.sample_rate, reader.channels, reader.duration_estimate)
        except OmniSepError as error:
            refused.append(_refuse(path, error, log, started))
    summary = {"model": None, "encoder": None, "results": [], "skipped": skipped, "refused": refused}
    if not readers:
        return summary

    separator = Separator(model, device=device)
    if not second_look:
        separator.second_look = None
    embedded = separator.prepare(queries)  # once for all inputs
    summary.update(model=str(separator.path), encoder=separator.encoder.name)
    progress = None if as_json else _progress_bar()
    try:
        for path, (rate, channels, duration) in readers.items():
            started = time.monotonic()
            task = None
            if progress is not None and progress.live.console.is_terminal:
                total = round(duration * rate) if duration else None
                task = progress.add_task(path.name, total=total)
            outputs = plan[path]
            try:
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
            except OmniSepError as error:
                refused.append(_refuse(path, error, log, started))
                continue
            finally:
                if task is not None:
                    progress.remove_task(task)
            if progress is not None:
                for row in rows:
                    progress.console.print(f"[bold]{path.name}[/]: {row['query']} -> {Path(row['target']).parent}")
            log.write(path, "done", started, None, [row[key] for row in rows for key in ("target", "residual", "plot")
                                                    if key in row])
            summary["results"].append({
                "input": str(path),
                "sample_rate": rate,
                "channels": 1 if downmix else channels,
                "outputs": rows,
            })
    finally:
        if progress is not None:
            progress.stop()
    return summary


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
