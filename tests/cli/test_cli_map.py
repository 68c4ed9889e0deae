"""`omnisep map` end to end with the toy encoder: 3 classes whose clips and pictures differ by construction."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from omnisep.cli import main

CLASSES = {"low hum": (200, (200, 30, 30)), "mid tone": (1000, (30, 200, 30)), "high whistle": (4000, (30, 30, 200))}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("map-corpus")
    rng = np.random.default_rng(0)
    rows = []
    for label, (frequency, colour) in CLASSES.items():
        slug = label.replace(" ", "-")
        image = folder / f"{slug}.png"
        Image.fromarray(np.tile(np.array(colour, np.uint8), (32, 32, 1))).save(image)
        for n in range(4):
            t = np.arange(16000) / 16000
            clip = 0.3 * np.sin(2 * np.pi * frequency * (1 + 0.02 * n) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(folder / f"{slug}-{n}.wav", clip.astype(np.float32), 16000)
            rows.append({"id": f"{slug}-{n}", "audio": f"{slug}-{n}.wav", "label": label, "image": image.name, "split": "test"})
    rows.append({"id": "other", "audio": "low-hum-0.wav", "label": "low hum", "split": "train"})
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_map_of_separable_classes(tiny_checkpoint, manifest, tmp_path, capsys):
    out = tmp_path / "map"
    args = ["map", str(manifest), "--model", str(tiny_checkpoint), "--method", "tsne", "--no-heads", "--k", "3", "-o", str(out)]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["map.html", "map.png", "numbers.json", "numbers.md"]
    record = json.loads((out / "numbers.json").read_text())
    numbers = record["numbers"]
    assert numbers["points"] == {"text": 3, "image": 3, "audio": 12, "composed": 12}  # the train item is left out
    assert numbers["knn_accuracy"]["audio"] == 1.0  # each class is one tone frequency
    assert record["split"] == "test" and record["method"] == "tsne" and record["heads"] is None
    assert "| audio | 12 | 1.000 |" in (out / "numbers.md").read_text()
    assert "kNN accuracy" in capsys.readouterr().out


def test_map_errors(tiny_checkpoint, manifest, tmp_path, capsys):
    assert main(["map", str(manifest), "--model", str(tiny_checkpoint), "--split", "val", "-o", str(tmp_path)]) == 2
    assert "no item of split 'val'" in capsys.readouterr().err
