from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from omnisep.encoders.heads import (
    HeadConfig,
    build_heads,
    heads_from_state,
    load_heads,
    retrieval_table,
    save_heads,
    train_heads,
)
from omnisep.errors import OmniSepError

CLASSES = [f"class {i}" for i in range(10)]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: with intra-op threads on a busy shared CPU the steps only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synthetic(generator, per_class, centres, mixing):
    """Clustered features behind a fixed nonlinear distortion, offset and scaled like raw CNN features."""
    index = torch.arange(len(CLASSES)).repeat(per_class)
    noise = torch.randn(len(index), centres.shape[1], generator=generator)
    features = torch.tanh((centres[index] + noise) @ mixing / 4) * 10 + 30
    return features, [CLASSES[i] for i in index]


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(7)
    anchors = {name: F.normalize(torch.randn(24, generator=g), dim=0) for name in CLASSES}
    centres, mixing = 3 * torch.randn(10, 40, generator=g), torch.randn(40, 40, generator=g)
    train = synthetic(g, 12, centres, mixing)
    test = synthetic(g, 4, centres, mixing)
    return anchors, train, test


def test_training_lifts_retrieval_far_above_chance(data):
    anchors, (train_x, train_labels), (test_x, test_labels) = data
    state = train_heads({"audio": train_x}, train_labels, anchors, hidden=64, epochs=40, batch_size=64)
    heads = heads_from_state(state)
    text = torch.stack([anchors[name] for name in CLASSES])
    with torch.no_grad():
        trained = retrieval_table(heads["audio"](test_x), test_labels, text, CLASSES)
        untrained_head = build_heads({"audio": HeadConfig(40, 24, 64)})["audio"]
        untrained = retrieval_table(untrained_head(test_x), test_labels, text, CLASSES)
    assert trained["audio->text"]["chance_top1"] == pytest.approx(0.1)
    assert trained["audio->text"]["top1"] >= 0.9
    assert trained["text->audio"]["top1"] >= 0.9
    assert untrained["audio->text"]["top1"] <= 0.4


def test_linear_heads_and_two_modalities_with_their_own_labels(data):
    anchors, (train_x, train_labels), _ = data
    image_x, image_labels = train_x[:50, :20], train_labels[:50]
    state = train_heads(
        {"audio": train_x, "image": image_x}, {"audio": train_labels, "image": image_labels}, anchors, hidden=0, epochs=2
    )
    heads = heads_from_state(state)
    assert set(heads) == {"audio", "image"}
    assert heads["image"].config == HeadConfig(20, 24, 0)
    assert heads["audio"](train_x).shape == (len(train_x), 24)


def test_retrieval_table_on_a_hand_checked_example():
    # two labels on the axes; audio 0 and 1 are 'a'-like, audio 2 is 'b'-like but closer to 'a' than audio 1 is
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    audio = torch.tensor([[1.0, 0.1], [0.2, 1.0], [1.0, 0.5]])
    table = retrieval_table(audio, ["a", "a", "b"], text, ["a", "b"], image=torch.tensor([[0.0, 1.0]]), image_labels=["b"], ks=(1, 2))
    # text 'a' ranks audio 0 (label a) first: hit; text 'b' ranks audio 1 (label a) first: miss
    assert table["text->audio"] == {"top1": 0.5, "top2": 1.0, "queries": 2}
    # audio 0 -> 'a' (hit), audio 1 -> 'b' (miss), audio 2 -> 'a' (miss)
    assert table["audio->text"]["top1"] == pytest.approx(1 / 3)
    # image (0, 1): audio 1 (label a) first, audio 2 (label b) second
    assert table["image->audio"] == {"top1": 0.0, "top2": 1.0, "queries": 1}


def test_save_and_load_round_trip(tmp_path):
    heads = build_heads({"image": HeadConfig(12, 6, 8), "audio": HeadConfig(5, 6, 0)}, seed=3)
    path = save_heads(tmp_path / "heads.safetensors", heads, training={"epochs": 1})
    loaded, description = load_heads(path)
    assert description["training"] == {"epochs": 1}
    x = torch.randn(2, 12)
    assert torch.equal(loaded["image"](x), heads["image"](x))
    (tmp_path / "heads.json").write_text("{}")
    with pytest.raises(OmniSepError, match="damaged or not omnisep heads"):
        load_heads(path)
    with pytest.raises(OmniSepError, match="do not exist"):
        load_heads(tmp_path / "other.safetensors")
