"""The `omnisep` command: one sub-command per verb, each in its own module.

Sub-commands are imported only when used, so `omnisep --help` is instant and a
broken optional dependency (say, the demo's) cannot break `separate`.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import warnings

import click

from omnisep import __version__
from omnisep.errors import OmniSepError

# verb -> (module, attribute, one-line help)
COMMANDS = {
    "separate": ("omnisep.cli.separate", "separate", "Separate the sound a query describes from audio files."),
    "train": ("omnisep.cli.train", "train", "Train a model from a config file (resumes if interrupted)."),
    "embed": ("omnisep.cli.embed", "embed", "Precompute query embeddings for a manifest into a cache."),
    "evaluate": ("omnisep.cli.evaluate", "evaluate", "Score a checkpoint on a test set with the paper's protocol."),
    "evaluate-auto-negative": ("omnisep.cli.evaluate", "evaluate_auto_negative",
                               "Sweep the automatic negative query; choose on validation, report on test."),
    "evaluate-presence": ("omnisep.cli.evaluate", "evaluate_presence",
                          "Scan fixed mixtures; choose the presence threshold on validation, report on test."),
    "corpus": ("omnisep.cli.corpus", "corpus", "Build the offline corpus from registry packages (or a synthetic one)."),
    "recipes": ("omnisep.cli.recipes", "recipes", "Prepare VGGSound or MUSIC videos you have as an omnisep corpus."),
    "scan": ("omnisep.cli.scan", "scan", "Find which of the model's labels are present in a recording, and when."),
    "map": ("omnisep.cli.map", "map_command", "Draw the query embeddings in 2-D (paper Fig. 3) with separability numbers."),
    "live": ("omnisep.cli.live", "live", "Separate a live signal (pipe or sound card) with a latency you choose."),
    "demo": ("omnisep.cli.demo", "demo", "Start the local web demo."),
    "models": ("omnisep.cli.models", "models", "List bundled and local models."),
    "encoders": ("omnisep.cli.encoders", "encoders", "Convert encoder weights; train the bundled encoder's heads."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, short = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("omnisep"):
                return None
            raise

    def format_commands(self, ctx, formatter):
        # Short help without importing every sub-command.
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows, col_max=8)  # longer names (evaluate-presence) get a line of their own


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="omnisep")
def cli():
    """Omni-modal query-based sound separation.

    \b
    Examples:
      omnisep separate examples/dog_and_violin.wav --text "dog barking"
      omnisep separate song.mp3 --image violin.png --negative-text "speech"
      omnisep models
    """


@contextlib.contextmanager
def cli_warnings():
    """Warnings as ``omnisep: warning: ...`` lines on stderr, for every verb (not Python's file:line form)."""
    with warnings.catch_warnings():
        # Python's filters stay (a distinct message is shown once); only the form changes.
        warnings.showwarning = lambda message, *args, **kwargs: click.echo(f"omnisep: warning: {message}", err=True)
        yield


def main(argv=None) -> int:
    """Entry point: user errors become one sentence and exit code 2; signals leave no partial file.

    SIGINT exits 130 and SIGTERM 143 (128 + the signal), after every partial
    output has been removed (:mod:`omnisep.fileio`).
    """
    from omnisep import fileio
    from omnisep.heap import keep_freed_memory

    keep_freed_memory()  # per-chunk buffers are reused instead of re-faulted (docs/performance-scale.md)
    try:
        with fileio.terminate_as_exception(), cli_warnings():
            cli.main(args=argv, prog_name="omnisep", standalone_mode=False)
    except OmniSepError as exc:
        if str(exc):
            click.echo(f"omnisep: error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("omnisep: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except KeyboardInterrupt:
        click.echo("omnisep: interrupted", err=True)
        return 130
    except fileio.Terminated:
        click.echo("omnisep: terminated", err=True)
        return fileio.Terminated.exit_code
    finally:
        fileio.remove_live_partials()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
