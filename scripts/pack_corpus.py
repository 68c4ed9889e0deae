"""Pack corpus clips as Ogg Opus (~21 kbit/s) with a manifest, for training on a machine the corpus cannot be built on.

    python scripts/pack_corpus.py corpus/ packs/train --splits train,val --cache runs/cache-full \
        --mixtures corpus/mixtures_val.jsonl

The pack's manifest keeps every field of the corpus manifest; ``audio``
points at the Opus file and picture paths are dropped (image queries come
from the embedding cache, copied in as ``cache/`` when ``--cache`` is given).
Training reads the pack like any manifest: ``data.train_manifest =
"PACK/manifest.jsonl"``, ``data.cache = "PACK/cache"``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import soundfile as sf

from omnisep.audio import load_audio
from omnisep.spectral import SAMPLE_RATE

COMPRESSION = 0.95  # soundfile's Opus compression level: ~21 kbit/s for this corpus


def write_cache_subset(sources: list[Path], ids: list[str], out: Path, shard_size: int = 256) -> None:
    """The pack's items of one or more embedding caches of one encoder, as float16 (half the size; training reads float32)."""
    import torch
    from safetensors.torch import save_file

    from omnisep.data.cache import EmbeddingCache

    caches = [EmbeddingCache(source) for source in sources]
    cache = caches[0]
    if any(other.encoder != cache.encoder or other.modalities != cache.modalities for other in caches[1:]):
        raise SystemExit("the embedding caches were made by different encoders or for different modalities")
    owner = {}
    for other in reversed(caches):
        owner.update({item_id: other for item_id in other.ids()})
    missing = [item_id for item_id in ids if item_id not in owner]
    if missing:
        raise SystemExit(f"{len(missing)} pack items are in none of the caches (first: {missing[0]})")
    (out / "shards").mkdir(parents=True, exist_ok=True)
    names = []
    for number, first in enumerate(range(0, len(ids), shard_size)):
        chunk = ids[first : first + shard_size]
        tensors = {}
        for modality in cache.modalities:
            rows = [owner[item_id].get(item_id)[modality] for item_id in chunk]
            tensors[modality] = torch.stack([torch.zeros(cache.dim) if r is None else r.float() for r in rows]).half()
            tensors[f"{modality}.present"] = torch.tensor([r is not None for r in rows], dtype=torch.uint8)
        name = f"shard-{number:05d}.safetensors"
        save_file(tensors, str(out / "shards" / name), metadata={"ids": json.dumps(chunk)})
        names.append(name)
    index = {"encoder": cache.encoder, "format": "omnisep-embedding-cache", "format_version": 1,
             "modalities": list(cache.modalities), "shards": names}
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--splits", default="train,val")
    parser.add_argument("--cache", type=Path, action="append", default=[], help="embedding cache(s) whose pack items are copied in (float16)")
    parser.add_argument("--mixtures", type=Path, nargs="*", default=[], help="mixture lists to copy in (e.g. corpus/mixtures_val.jsonl)")
    args = parser.parse_args()
    splits = set(args.splits.split(","))
    (args.out / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    with open(args.corpus / "manifest.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row.get("split") not in splits:
                continue
            target = args.out / "audio" / f"{row['id']}.ogg"
            if not target.exists():
                audio, _ = load_audio(args.corpus / row["audio"], sample_rate=SAMPLE_RATE, mono=True)
                part = target.with_suffix(".part.ogg")
                sf.write(part, audio[0], SAMPLE_RATE, format="OGG", subtype="OPUS", compression_level=COMPRESSION)
                part.rename(target)
            row["audio"] = f"audio/{target.name}"
            row.pop("image", None)
            row.pop("video", None)
            rows.append(row)
    with open(args.out / "manifest.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    if args.cache:
        write_cache_subset(args.cache, [row["id"] for row in rows], args.out / "cache")
    for mixtures in args.mixtures:
        (args.out / mixtures.name).write_bytes(mixtures.read_bytes())
    size = sum(path.stat().st_size for path in args.out.rglob("*") if path.is_file())
    print(f"{len(rows)} clips, {size / 1e6:.1f} MB -> {args.out}")


if __name__ == "__main__":
    main()
