"""`omnisep embed`: precompute the query embeddings of a manifest into a cache folder."""

from __future__ import annotations

from pathlib import Path

import click

from omnisep.errors import OmniSepError
from omnisep.modalities import MODALITIES


@click.command(
    help="Precompute query embeddings for a manifest into a cache.\n\n"
    "\b\nExamples:\n"
    "  omnisep embed corpus/manifest.jsonl -o corpus/embeddings\n"
    "  omnisep embed train.csv --encoder imagebind --imagebind-weights imagebind_huge.pth -o cache/ib\n\n"
    "Finished shards are kept: run the same command again to resume after an interruption.\n\n"
    "Under torchrun (or with --rank/--world-size) every process embeds every WORLD_SIZE-th item "
    "into OUTPUT/ranks/rank-R-of-W/; readers of OUTPUT see all parts as one cache:\n"
    "\b\n  torchrun --nproc_per_node 8 -m omnisep embed corpus/manifest.jsonl -o cache --device cuda"
)
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path), help="Cache folder (created).")
@click.option("--encoder", "encoder_name", default="bundled", show_default=True, help="bundled, imagebind or toy.")
@click.option("--modalities", default=",".join(MODALITIES), show_default=True,
              help=f"Comma-separated subset of {','.join(MODALITIES)}.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="Queries per encoder call.")
@click.option("--shard-size", default=256, show_default=True, type=click.IntRange(min=1), help="Items per shard file.")
@click.option("--imagebind-weights", type=click.Path(dir_okay=False, path_type=Path), default=None, help="imagebind_huge.pth or .safetensors.")
@click.option("--heads", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Heads file for the bundled encoder, or a shipped version: v1 (default) or v2 (image head v2, opt-in).")
@click.option("--device", default="cpu", show_default=True, help="torch device for the encoder.")
@click.option("--rank", type=click.IntRange(min=0), default=None, help="This process's share (default: $RANK, else 0).")
@click.option("--world-size", type=click.IntRange(min=1), default=None, help="Number of shares (default: $WORLD_SIZE, else 1).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def embed(manifest, output, encoder_name, modalities, batch_size, shard_size, imagebind_weights, heads, device, rank, world_size, quiet):
    from omnisep.data.cache import build_cache
    from omnisep.data.manifest import read_manifest
    from omnisep.encoders import get_encoder

    import os

    from omnisep.data.cache import rank_folder

    wanted = [m.strip() for m in modalities.split(",") if m.strip()]
    items = read_manifest(manifest)
    world_size = world_size if world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    rank = rank if rank is not None else int(os.environ.get("RANK", "0"))
    if rank >= world_size:
        raise OmniSepError(f"--rank {rank} must be smaller than --world-size {world_size}.")
    if world_size > 1:
        items = items[rank::world_size]
        output = rank_folder(output, rank, world_size)
        if device == "cuda":
            device = f"cuda:{os.environ.get('LOCAL_RANK', rank)}"
        quiet = quiet or rank != 0
    options = {"device": device}
    if encoder_name == "imagebind":
        options["weights"] = imagebind_weights
    elif imagebind_weights is not None:
        raise OmniSepError(f"--imagebind-weights is for --encoder imagebind, not '{encoder_name}'.")
    if encoder_name == "bundled":
        options["heads"] = heads
    elif heads is not None:
        raise OmniSepError(f"--heads is for --encoder bundled, not '{encoder_name}'.")
    if encoder_name == "toy":
        options.pop("device")
    encoder = get_encoder(encoder_name, **options)
    counts = build_cache(
        items, encoder, output, modalities=wanted, batch_size=batch_size, shard_size=shard_size,
        progress=not quiet, total=len(items),
    )
    click.echo(
        f"{counts['done']} items embedded, {counts['skipped']} already cached, "
        f"{counts['shards']} new shards in {output} (encoder {encoder.name}, {encoder.dim}-d)"
    )
