"""`omnisep recipes vggsound|music VIDEOS OUT --split NAME=CSV ...`: datasets you have, as an omnisep corpus."""

from __future__ import annotations

import click

from omnisep.errors import OmniSepError


def _split_lists(values) -> dict[str, str]:
    lists = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise OmniSepError(f"--split {value!r} must look like NAME=PATH, e.g. --split test=lists/test.csv.")
        lists[name.strip()] = path.strip()
    return lists


def _common(function):
    options = [
        click.argument("videos_dir", type=click.Path(file_okay=False)),
        click.argument("out_dir", type=click.Path(file_okay=False)),
        click.option("--split", "splits", multiple=True, metavar="NAME=CSV",
                     help="A split list (NAME: train, val or test); CLIPSep's 4-column layout or a CSV with id,label columns."),
        click.option("--clean-list", type=click.Path(dir_okay=False), help="Clean target list for the CLEAN+ test set (same layouts)."),
        click.option("--fps", type=float, default=1.0, show_default=True, help="Frames per second to extract."),
        click.option("--seed", type=int, default=1234, show_default=True, help="Seed of the interferer draws."),
        click.option("--allow-same-label", is_flag=True, help="Let an interferer share the target's class (CLIPSep's draw)."),
        click.option("--workers", type=int, default=1, show_default=True, help="Videos decoded in parallel."),
        click.option("--overwrite", is_flag=True, help="Extract again even where outputs exist."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _report(result) -> None:
    counts = result.counts
    click.echo(
        f"prepared {counts['prepared']} of {counts['listed']} listed videos "
        f"(train {counts['train']}, val {counts['val']}, test {counts['test']}, clean {counts['clean']}; "
        f"{counts['missing']} missing, {counts['failed']} undecodable: see prepare_report.json)"
    )
    click.echo(f"manifest: {result.manifest}")
    for path in result.mixture_lists:
        click.echo(f"test set: {path}")


@click.group()
def recipes():
    """Prepare VGGSound or MUSIC from videos you downloaded (audio, 1 fps frames, manifest, test mixtures)."""


@recipes.command("vggsound")
@_common
def vggsound(videos_dir, out_dir, splits, clean_list, fps, seed, allow_same_label, workers, overwrite, quiet):
    """VGGSound videos under VIDEOS_DIR -> corpus in OUT_DIR (and VGGSOUND-CLEAN+ with --clean-list).

    \b
    Example:
      omnisep recipes vggsound ~/vggsound/video data/vggsound \\
          --split train=clipsep/data/vggsound/train.csv --split val=clipsep/data/vggsound/val.csv \\
          --split test=clipsep/data/vggsound/test.csv --clean-list clipsep/data/vggsound/test-good.csv --workers 8
    """
    from omnisep.data.recipes.vggsound import prepare_vggsound

    result = prepare_vggsound(videos_dir, out_dir, _split_lists(splits), clean_list, fps=fps, seed=seed,
                              allow_same_label=allow_same_label, workers=workers, overwrite=overwrite, progress=not quiet)
    _report(result)


@recipes.command("music")
@_common
@click.option("--vggsound-manifest", type=click.Path(dir_okay=False),
              help="Prepared VGGSound manifest: its test items are the MUSIC-CLEAN+ interferers.")
def music(videos_dir, out_dir, splits, clean_list, fps, seed, allow_same_label, workers, overwrite, quiet, vggsound_manifest):
    """MUSIC videos under VIDEOS_DIR -> corpus in OUT_DIR (and MUSIC-CLEAN+ with --clean-list).

    \b
    Example:
      omnisep recipes music ~/MUSIC/solo data/music --split train=clipsep/data/MUSIC/solo/train.csv \\
          --split val=clipsep/data/MUSIC/solo/val.csv --split test=clipsep/data/MUSIC/solo/test.csv
    """
    from omnisep.data.recipes.music import prepare_music

    result = prepare_music(videos_dir, out_dir, _split_lists(splits), clean_list, vggsound_manifest, fps=fps, seed=seed,
                           allow_same_label=allow_same_label, workers=workers, overwrite=overwrite, progress=not quiet)
    _report(result)
