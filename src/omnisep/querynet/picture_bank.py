"""A picture bank for training: many artists' pictures of each class, embedded by the model's image head.

The corpus gives every training item one picture, Google's emoji of its class,
so a Separate-Net trained on it learns one image vector per class and answers
less well to any other drawing (the Twemoji test pictures, a user's photo). The
bank holds the pictures of the Query-Net picture sources (emoji sets, icon sets),
plain and augmented (crops, colour, greyscale, blur, sketches: the copies the
image head v2 is trained on), embedded by the heads the Separate-Net reads
(v1 by default). ``queries.image_bank`` + ``queries.image_variant_prob`` swap a
training item's picture for one of them (docs/training.md).

Left out by default: Twemoji (the test split's pictures), Fluent flat (the
shifted validation split's, ``omnisep corpus shift``) and the GCompris
drawings, photos and cartoons (issue 14's held-out style). The file has the
Query-Aug bank's format (``kind`` = the source, ``text`` = the picture's name).

    python -m omnisep.querynet.picture_bank -o runs/picture-bank.safetensors
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

HELD_OUT = ("twemoji", "fluent-flat", "gcompris-drawing", "gcompris-photo", "gcompris-cartoon")


def embed_pictures(head, features: torch.Tensor) -> torch.Tensor:
    """Backbone features ``[N, 1280]`` -> unit query embeddings through an image head."""
    with torch.no_grad():
        return F.normalize(head(features), dim=-1)


def build_picture_bank(output: Path, work: Path = Path("runs/querynet"), heads=None, held_out=HELD_OUT,
                       copies: int = 6, seed: int = 0, log=print) -> dict:
    """Embed every picture (and its ``copies`` augmented versions) of every source not ``held_out``; save the bank."""
    from omnisep.data.corpus import CLASSES
    from omnisep.encoders.bundled import BundledEncoder
    from omnisep.query_aug import ClassMatcher
    from omnisep.querynet.image_head import V1_HEADS, load_or_compute_features
    from omnisep.querynet.pictures import SOURCES, collect_pictures

    encoder = BundledEncoder(heads or V1_HEADS)
    sources = [s for s in SOURCES if s.name not in set(held_out)]
    pictures = collect_pictures(sorted(CLASSES), sources=sources, log=log)
    features, owners = load_or_compute_features(work, encoder, pictures, copies, seed, log)
    embeddings = embed_pictures(encoder.heads["image"], features)
    labels = sorted({p.label for p in pictures})
    matcher = ClassMatcher(labels, [pictures[i].label for i in owners], embeddings,
                           [pictures[i].name for i in owners], [pictures[i].source for i in owners])
    record = {"heads": str(heads or "v1"), "sources": [s.name for s in sources], "held_out": list(held_out),
              "pictures": len(pictures), "copies": copies, "seed": seed, "entries": len(owners), "classes": len(labels)}
    matcher.save(output, record)
    log(f"picture bank: {len(owners)} entries ({len(pictures)} pictures x {1 + copies}) of {len(labels)} classes -> {output}")
    return record


def main(argv=None) -> int:
    import click

    @click.command()
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
    @click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/querynet"), show_default=True,
                  help="Where the pictures' backbone features are cached (shared with the image head's training).")
    @click.option("--heads", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Heads whose image head embeds the pictures [default: the shipped v1 heads, which v2 reads].")
    @click.option("--held-out", default=",".join(HELD_OUT), show_default=True, help="Picture sources left out.")
    def command(output, work, heads, held_out):
        build_picture_bank(output, work, heads, tuple(s for s in held_out.split(",") if s), log=click.echo)

    command.main(args=argv, standalone_mode=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
