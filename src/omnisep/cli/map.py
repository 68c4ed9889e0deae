"""`omnisep map`: the paper's Fig. 3 (query embeddings in 2-D) with the numbers that say what it shows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from omnisep.errors import OmniSepError, describe


@click.command("map")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", default="default", show_default=True, help="Model name or checkpoint folder: its encoder makes the embeddings.")
@click.option("--split", default="test", show_default=True, help="Which split of the manifest to map ('all' for every item).")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), help="Embedding cache of the model's encoder (else the encoder runs).")
@click.option("--descriptions", type=click.Path(dir_okay=False, path_type=Path), help="JSON {label: [free-form text, ...]}: extra text points.")
@click.option("--method", type=click.Choice(["umap", "tsne"]), default="umap", show_default=True, help="2-D projection (umap needs umap-learn).")
@click.option("--heads/--no-heads", "compare_heads", default=True, show_default=True,
              help="Also measure before and after the bundled encoder's heads (runs its backbones on the items).")
@click.option("--heads-per-class", default=4, show_default=True, type=click.IntRange(min=2),
              help="Clips per class for the before/after-heads numbers (the backbones are slow on a CPU).")
@click.option("--k", default=5, show_default=True, type=click.IntRange(min=1), help="Neighbours of the kNN accuracy.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Writes map.png, map.html, numbers.json and numbers.md there (created).")
def map_command(manifest, model, split, cache, descriptions, method, compare_heads, heads_per_class, k, seed, output_dir):
    """Draw the query embeddings of MANIFEST's items in two dimensions, by class and modality.

    Text (one point per class label, plus --descriptions), image (one per
    picture), audio (one per clip) and composed Query-Mixup queries (one per
    clip), projected with UMAP or t-SNE: a PNG and a self-contained
    interactive HTML (hover: class, modality, source). numbers.md/json hold
    per-modality kNN class accuracy in the full space, zero-shot accuracy
    against the label texts, and the mean cosine between a class's
    embeddings of two modalities (the modality gap) -- for the bundled
    encoder also before its heads.

    \b
    Examples:
      omnisep map corpus/manifest.jsonl --cache runs/cache -o map/
      omnisep map corpus/manifest.jsonl --model runs/x/best --method tsne --no-heads -o map-x/
    """
    from omnisep import embedding_map as em
    from omnisep.data.manifest import read_manifest
    from omnisep.data.mixing import QueryTable
    from omnisep.pretrained import resolve_model
    from omnisep.states import check_encoder, load_checkpoint

    started = time.perf_counter()
    items = read_manifest(manifest)
    if split != "all":
        items = [item for item in items if (item.split or "").lower() == split.lower()]
        if not items:
            raise OmniSepError(f"manifest {describe(manifest)} has no item of split '{split}'.")
    described = None
    if descriptions is not None:
        from omnisep.evaluation.protocol import read_descriptions

        described = read_descriptions(descriptions)
    path = resolve_model(model)
    checkpoint = load_checkpoint(path)
    encoder = None
    if cache is None or described is not None or compare_heads:
        from omnisep.encoders import get_encoder

        encoder = get_encoder(checkpoint.config["encoder"]["name"])
        check_encoder(checkpoint.config, encoder.identity())
    if cache is not None:
        from omnisep.data.cache import EmbeddingCache

        store = EmbeddingCache(cache)
        try:
            check_encoder(checkpoint.config, store.encoder)
        except OmniSepError as error:
            raise OmniSepError(f"Embedding cache {describe(cache)} does not fit model {describe(path)}: {error}") from None
        table = QueryTable(items, cache=store)
    else:
        table = QueryTable(items, encoder=encoder)
    output_dir.mkdir(parents=True, exist_ok=True)

    points = em.collect_points(items, table, described, encoder, seed)
    numbers = em.measure(points, k)
    heads = None
    if compare_heads and hasattr(encoder, "audio_backbone_features"):
        from collections import Counter

        subset, counts = [], Counter()
        for item in items:
            if counts[item.label] < heads_per_class:
                counts[item.label] += 1
                subset.append(item)
        heads = em.head_comparison(subset, encoder, table, min(k, heads_per_class - 1))
        heads["clips_per_class"] = heads_per_class
    elif compare_heads:
        click.echo(f"note: the '{encoder.name}' encoder has no projection heads; --no-heads assumed.", err=True)
    xy = em.project(points.vectors, method, seed)
    title = f"{Path(str(path)).name} ({checkpoint.config['encoder']['name']} encoder): {split} split, {method.upper()}"
    em.plot_png(points, xy, output_dir / "map.png", title, numbers)
    em.write_html(points, xy, output_dir / "map.html", title, numbers)
    record = {
        "model": str(path), "manifest": str(manifest), "split": split, "method": method, "seed": seed,
        "encoder": checkpoint.config["encoder"]["name"], "numbers": numbers, "heads": heads,
        "seconds": round(time.perf_counter() - started, 1),
    }
    markdown = f"# Embedding map: {title}\n\n" + em.numbers_markdown(numbers, heads)
    em._atomic(output_dir / "numbers.json", lambda temp: Path(temp).write_text(json.dumps(record, indent=1) + "\n"))
    em._atomic(output_dir / "numbers.md", lambda temp: Path(temp).write_text(markdown))
    click.echo(em.numbers_markdown(numbers, heads))
    click.echo(f"wrote {output_dir / 'map.png'}, map.html, numbers.json, numbers.md ({record['seconds']} s)", err=True)
