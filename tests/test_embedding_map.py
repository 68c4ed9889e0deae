"""The embedding map on points whose classes are separable by construction."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from omnisep import embedding_map as em
from omnisep.embedding_map import MapPoints, knn_accuracy, measure


def constructed(per_class: int = 4) -> MapPoints:
    """3 classes on axes e0..e2; audio adds 0.3 e3, image 0.3 e4, and each point 0.1 on its own axis.

    cos(text_c, audio of c) = 1 / sqrt(1 + 0.09 + 0.01) exactly; 0 across classes.
    """
    n_points = 3 * per_class * 2
    dim = 5 + n_points
    vectors, classes, modalities = [], [], []
    own = 5
    for c in range(3):
        text = np.zeros(dim)
        text[c] = 1.0
        vectors.append(text), classes.append(f"class {c}"), modalities.append("text")
        for modality, axis in (("audio", 3), ("image", 4)):
            for _ in range(per_class):
                v = text.copy()
                v[axis], v[own] = 0.3, 0.1
                own += 1
                vectors.append(v), classes.append(f"class {c}"), modalities.append(modality)
    x = np.stack(vectors)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sources = [c if m == "text" else f"p{i}" for i, (c, m) in enumerate(zip(classes, modalities))]  # label texts
    return MapPoints(x.astype(np.float32), classes, modalities, sources)


def test_numbers_of_a_map_separable_by_construction():
    numbers = measure(constructed(), k=3)
    assert numbers["points"] == {"text": 3, "audio": 12, "image": 12}
    assert numbers["knn_accuracy"]["audio"] == 1.0 and numbers["knn_accuracy"]["image"] == 1.0
    assert numbers["knn_accuracy"]["text"] is None  # one text point per class: nothing to vote with
    assert numbers["zero_shot_accuracy"] == {"image": 1.0, "audio": 1.0}
    text_audio = numbers["cross_modal_cosine"]["text-audio"]
    assert text_audio["same_class"] == pytest.approx(1 / math.sqrt(1.1), abs=1e-6)
    assert text_audio["other_class"] == pytest.approx(0.0, abs=1e-6)
    # audio and image points of one class share only the class axis: 1 / 1.1.
    assert numbers["cross_modal_cosine"]["image-audio"]["same_class"] == pytest.approx(1 / 1.1, abs=1e-6)
    assert numbers["chance_accuracy"] == pytest.approx(1 / 3)


def test_knn_accuracy_counts_each_left_out_point():
    # Two tight pairs and one point of class b sitting inside class a's pair.
    x = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99], [0.995, 0.1]], dtype=np.float32)
    classes = ["a", "a", "b", "b", "b"]
    # k=1: the intruder is the nearest neighbour of both "a" points (2 wrong) and its own nearest is
    # an "a" (wrong); the two genuine "b" points find each other.
    assert knn_accuracy(x, classes, k=1) == pytest.approx(2 / 5)
    # k=3: each "a" sees the other "a", the intruder and one far "b": a 1-1 tie broken by the
    # nearest (the intruder, wrong); the intruder sees two "a" (wrong); "b" points see b, b, a (right).
    assert knn_accuracy(x, classes, k=3) == pytest.approx(2 / 5)


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_projection_keeps_the_classes_apart(method):
    points = constructed(per_class=8)
    xy = em.project(points.vectors, method=method, seed=0, neighbours=5)
    assert xy.shape == (len(points), 2)
    classes = np.asarray(points.classes)
    distance = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    # Every point's nearest neighbour on the map is of its own class (a class may still split
    # into its modalities' sub-clusters, as real maps do).
    assert (classes[distance.argmin(axis=1)] == classes).mean() >= 0.95


def test_html_is_self_contained_and_lists_every_point(tmp_path):
    points = constructed()
    xy = np.random.default_rng(0).standard_normal((len(points), 2))
    path = em.write_html(points, xy, tmp_path / "map.html", "test <map>", measure(points, k=3))
    text = path.read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?:", text)  # nothing fetched from anywhere
    assert "test &lt;map&gt;" in text
    assert text.count('class="pt"') == len(points)
    data = json.loads(re.search(r'<script id="points" type="application/json">(.*?)</script>', text, re.S).group(1))
    assert len(data) == len(points) and data[-1][1] == "text"  # text drawn last (on top)
    assert sorted(map(tuple, data)) == sorted(zip(points.classes, points.modalities, points.sources))


def test_png(tmp_path):
    from PIL import Image

    points = constructed()
    xy = np.random.default_rng(0).standard_normal((len(points), 2))
    em.plot_png(points, xy, tmp_path / "map.png", "t", measure(points, k=3))
    with Image.open(tmp_path / "map.png") as image:
        assert image.format == "PNG" and image.width > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["map.png"]


def test_heads_before_and_after():
    """Features of 3 classes; "trained" linear heads map each class's features onto its label text."""
    from omnisep.encoders.heads import HeadConfig, build_heads

    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    text = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((3, 16)).astype(np.float32)), dim=-1)
    heads = build_heads({"audio": HeadConfig(6, 16, 0), "image": HeadConfig(6, 16, 0)})
    with torch.no_grad():
        for head in heads.values():
            head.layers[0].weight.zero_()
            head.layers[0].bias.zero_()
            head.layers[0].weight[:, :3] = text.T  # feature axis c -> label c's text
    items = [SimpleNamespace(label=labels[i % 3], image=f"img{i}.png", audio=f"clip{i}.wav") for i in range(9)]

    def features(n):
        out = np.zeros((n, 6), np.float32)
        for i in range(n):
            out[i, i % 3] = 1.0
            out[i, 3:] = 0.1 * rng.standard_normal(3)
        return torch.from_numpy(out)

    encoder = SimpleNamespace(
        name="fake", heads=heads, audio_sample_rate=16000,
        embed_text=lambda texts: text[[labels.index(t) for t in texts]],
        image_backbone_features=lambda images: features(len(images)),
        audio_backbone_features=lambda clips: features(len(clips)),
    )
    import omnisep.data.cache as cache_module
    import omnisep.data.mixing as mixing

    original_inputs, original_clip = cache_module.item_inputs, mixing.load_clip
    cache_module.item_inputs = lambda item, modality: [np.zeros((4, 4, 3), np.uint8)]
    mixing.load_clip = lambda path: np.zeros(1600, np.float32)
    try:
        result = em.head_comparison(items, encoder, table=None, k=2)
    finally:
        cache_module.item_inputs, mixing.load_clip = original_inputs, original_clip
    assert result["backbone_knn_accuracy"] == {"image": 1.0, "audio": 1.0}
    assert result["trained_heads"]["zero_shot_accuracy"] == {"image": 1.0, "audio": 1.0}
    assert result["trained_heads"]["cross_modal_cosine"]["text-audio"]["same_class"] > 0.95
    assert result["untrained_heads"]["cross_modal_cosine"]["text-audio"]["same_class"] < 0.5
