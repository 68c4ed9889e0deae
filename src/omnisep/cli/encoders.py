"""`omnisep encoders`: one-time jobs on the query encoders (weight conversion, training the bundled heads)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def encoders():
    """Convert encoder weights to safetensors, or train the bundled encoder's heads."""


@encoders.command()
@click.option("--imagebind", "imagebind_source", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Convert this imagebind_huge.pth (vision, text and audio branches) instead of the bundled backbones.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Target: a .safetensors file (--imagebind; default beside the source) or a folder (backbones).")
def convert(imagebind_source: Path | None, output: Path | None) -> None:
    """Convert pickled weights to safetensors, once (the bundled backbones by default).

    Pickled checkpoints are read only with PyTorch's restricted weights-only
    unpickler; after conversion nothing pickled is read again.

    \b
    Examples:
      omnisep encoders convert                      # bundled backbones -> $OMNISEP_CACHE/backbones
      omnisep encoders convert --imagebind imagebind_huge.pth [-o imagebind_huge.safetensors]
    """
    if imagebind_source is not None:
        from omnisep.encoders.imagebind import convert_imagebind

        target = output or imagebind_source.with_suffix(".safetensors")
        click.echo(f"converting {imagebind_source} -> {target} (a few minutes for 4.5 GB)")
        convert_imagebind(imagebind_source, target)
        click.echo(f"wrote {target}")
        return
    from omnisep.encoders.backbones import convert_backbones, load_efficientnet_lite2

    folder = convert_backbones(output)
    load_efficientnet_lite2(folder)  # the picture recogniser's second backbone, converted on first use otherwise
    click.echo(f"wrote the bundled encoder's backbones (and the picture recogniser's EfficientNet-Lite2) to {folder}")


@encoders.command("train-heads")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--hidden", default=512, show_default=True, help="Hidden width of the heads (0: linear).")
@click.option("--epochs", default=200, show_default=True)
@click.option("--augment", "augment_copies", default=3, show_default=True, help="Augmented copies per training item.")
@click.option("--seed", default=0, show_default=True)
def train_heads(manifest, output, hidden, epochs, augment_copies, seed):
    """Train the bundled encoder's projection heads on MANIFEST's training items.

    \b
    Example:
      omnisep encoders train-heads corpus/manifest.jsonl -o src/omnisep/pretrained/encoder-heads/heads.safetensors
    """
    from omnisep.training.encoder_heads import train_from_manifest

    train_from_manifest(manifest, output, hidden=hidden, epochs=epochs, augment_copies=augment_copies, seed=seed,
                        log=click.echo)


@encoders.command("train-tagger")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The tagger's .safetensors (its .json is written beside it).")
@click.option("--work", default=Path("runs/tagger"), show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the training mixtures' features are kept (a rerun reuses them).")
@click.option("--mixtures", default=24000, show_default=True, help="Training mixtures drawn from the train items (a multiple of 4,000).")
@click.option("--validation", "validation_list", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A mixture list over MANIFEST's items, scored every 10 epochs (never the test list).")
@click.option("--hidden", default=512, show_default=True)
@click.option("--dropout", default=0.5, show_default=True)
@click.option("--weight-decay", default=1e-2, show_default=True)
@click.option("--epochs", default=40, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--pooling", type=click.Choice(["bands", "embedding"]), default="bands", show_default=True,
              help="How the tagger reads the sound CNN: its embedding per frequency quarter as well (bands) or "
                   "the embedding alone (what taggers before 2026-12-07 read).")
def train_tagger(manifest, output, work, mixtures, validation_list, hidden, dropout, weight_decay, epochs, seed, pooling):
    """Train the sound tagger that the scan consults (which labels sound in a window) on mixtures of MANIFEST's training clips.

    \b
    Example:
      omnisep encoders train-tagger corpus/manifest.jsonl -o src/omnisep/pretrained/tagger/tagger.safetensors \\
          --validation corpus/mixtures_val.jsonl
    """
    from omnisep.training.tagger import train_from_manifest

    validation = None if validation_list is None else str(validation_list)
    path = train_from_manifest(str(manifest), str(output), str(work), mixtures=mixtures, seed=seed, hidden=hidden,
                               dropout=dropout, weight_decay=weight_decay, epochs=epochs, validation_list=validation,
                               log=click.echo, pooling=pooling)
    click.echo(f"wrote {path}")
