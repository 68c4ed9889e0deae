"""One-time conversion of pickled encoder weights to safetensors.

    python -m omnisep.encoders.convert                    # bundled backbones -> $OMNISEP_CACHE/backbones
    python -m omnisep.encoders.convert --imagebind imagebind_huge.pth [-o imagebind_huge.safetensors]

Pickled checkpoints are read only with PyTorch's restricted weights-only
unpickler; after conversion nothing pickled is read again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from omnisep.errors import OmniSepError


@click.command()
@click.option("--imagebind", "imagebind_source", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Convert this imagebind_huge.pth (vision, text and audio branches) instead of the bundled backbones.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Target: a .safetensors file (--imagebind; default beside the source) or a folder (backbones).")
def main(imagebind_source: Path | None, output: Path | None) -> None:
    if imagebind_source is not None:
        from omnisep.encoders.imagebind import convert_imagebind

        target = output or imagebind_source.with_suffix(".safetensors")
        click.echo(f"converting {imagebind_source} -> {target} (a few minutes for 4.5 GB)")
        convert_imagebind(imagebind_source, target)
        click.echo(f"wrote {target}")
        return
    from omnisep.encoders.backbones import convert_backbones

    folder = convert_backbones(output)
    click.echo(f"wrote the bundled encoder's backbones to {folder}")


if __name__ == "__main__":
    try:
        main(standalone_mode=False)
    except OmniSepError as exc:
        click.echo(f"omnisep: error: {exc}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
