import json

import numpy as np
import pytest
import soundfile
import torch

from omnisep.data.manifest import ManifestItem
from omnisep.data.mixing import (
    MixtureDataset,
    QueryTable,
    compose_queries,
    fit_to_length,
)
from omnisep.data.mixtures import read_mixture_list
from omnisep.errors import OmniSepError
from omnisep.queries import mixup_weights

SEGMENT = 1000
DIM = 4


class DictCache:
    """Stands in for the embedding cache: item id -> {modality: vector or None}."""

    def __init__(self, rows):
        self.rows = rows
        self.dim = DIM
        self.path = "cache-folder"

    def __contains__(self, item_id):
        return item_id in self.rows

    def get(self, item_id):
        return self.rows[item_id]

    def present(self, item_id):
        return {m: self.rows[item_id].get(m) is not None for m in ("text", "image", "audio")}


@pytest.fixture
def corpus(tmp_path):
    """Six clips of three labels; each clip is a constant level so crops and gains are easy to check."""
    items, rows = [], {}
    for n, (label, length) in enumerate(
        [("a", 1500), ("a", 800), ("b", 2000), ("b", 1200), ("c", 700), ("c", 3000)]
    ):
        path = tmp_path / f"{n}.wav"
        level = 0.3 + 0.13 * n
        soundfile.write(path, np.full(length, level, dtype=np.float32), 16000, subtype="FLOAT")
        items.append(ManifestItem(id=f"i{n}", audio=path, label=label))
        rows[f"i{n}"] = {
            "text": torch.eye(DIM)[ord(label) - ord("a")] * 3,
            "image": torch.ones(DIM) if n % 2 == 0 else None,
            "audio": torch.arange(DIM, dtype=torch.float32) + n,
        }
    return items, QueryTable(items, cache=DictCache(rows))


def make(corpus, **options):
    items, table = corpus
    options = {"training": True, "segment_samples": SEGMENT, "seed": 7, **options}
    return MixtureDataset(items, table, **options)


def test_fit_to_length_tiles_short_clips_and_crops_long_ones():
    assert fit_to_length(np.arange(5.0), 3, None).tolist() == [1, 2, 3]  # centre crop
    assert fit_to_length(np.array([1.0, 2.0]), 5, None).tolist() == [1, 2, 1, 2, 1]  # tiled to 6, centre
    clip = np.arange(10.0)
    start = np.random.default_rng(3).integers(0, 10 - 4 + 1)
    assert fit_to_length(clip, 4, np.random.default_rng(3)).tolist() == clip[start : start + 4].tolist()


def test_training_examples_depend_only_on_seed_step_and_position(corpus):
    first, again = make(corpus)[(5, 3)], make(corpus)[(5, 3)]  # a fresh dataset: no hidden state
    for key in first:
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["mixture"], make(corpus)[(5, 4)]["mixture"])
    assert not torch.equal(first["mixture"], make(corpus, seed=8)[(5, 3)]["mixture"])


@pytest.mark.parametrize("num_sources", [2, 3])
def test_training_mixture_is_sum_of_distinct_labelled_scaled_sources(corpus, num_sources):
    items, _ = corpus
    dataset = make(corpus, num_sources=num_sources)
    levels = {}
    for position in range(40):
        example = dataset[(0, position)]
        sources = example["sources"]
        assert sources.shape == (num_sources, SEGMENT)
        torch.testing.assert_close(example["mixture"], sources.sum(0))
        # every clip is a constant, so each source is one value: level * gain, clipped, / N
        values = sources[:, 0] * num_sources
        assert torch.equal(sources, sources[:, :1].expand_as(sources))
        assert ((values >= 0.15 - 1e-6) & (values <= 1.0 + 1e-6)).all()
        # the query identifies the label: text rows are one-hot per label
        labels = example["embeddings"][:, 0].argmax(-1).tolist()
        assert len(set(labels)) == num_sources
        levels.setdefault("clipped", []).extend((values > 1 - 1e-6).tolist())
    assert any(levels["clipped"]) and not all(levels["clipped"])  # U(0.5, 1.5) gain then clip at 1


def test_evaluation_example_is_fixed_centre_crop_without_gain(corpus):
    items, _ = corpus
    dataset = make(corpus, training=False)
    assert len(dataset) == len(items)
    example = dataset[5]
    clip = soundfile.read(items[5].audio, dtype="float32")[0]
    torch.testing.assert_close(example["sources"][0], torch.from_numpy(fit_to_length(clip, SEGMENT, None)) / 2)
    assert example["embeddings"][1, 0].argmax() != example["embeddings"][0, 0].argmax()
    other_seed = make(corpus, training=False, seed=99)[5]  # the validation set does not follow the run's seed
    assert torch.equal(example["mixture"], other_seed["mixture"])


def test_mixture_list_fixes_evaluation_pairs(corpus, tmp_path):
    items, _ = corpus
    path = tmp_path / "mix.jsonl"
    path.write_text(json.dumps({"target": "i4", "interferers": ["i1"]}) + "\n")
    mixtures = read_mixture_list(path, items, 2)
    assert mixtures == [[4, 1]]
    example = make(corpus, training=False, mixtures=mixtures)[0]
    torch.testing.assert_close(example["sources"][:, 0], torch.tensor([0.82, 0.43]) / 2)


@pytest.mark.parametrize(
    "row, message",
    [
        ({"target": "i0", "interferers": ["zz"]}, "line 1: unknown item id zz"),
        ({"target": "i0", "interferers": ["i1", "i2"]}, "line 1: 3 sources, but the run mixes 2"),
        ({"target": "i0"}, "line 1: expected"),
    ],
)
def test_mixture_list_errors(corpus, tmp_path, row, message):
    path = tmp_path / "mix.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(OmniSepError, match=message):
        read_mixture_list(path, corpus[0], 2)


def _query_inputs():
    embeddings = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 2.0]]])  # text, image, audio
    available = torch.tensor([[True, False, True]])
    return embeddings, available


def test_all_no_mixup_gives_equal_weights_to_normalised_available_parts():
    embeddings, available = _query_inputs()
    query = compose_queries(embeddings, available, "all_no_mixup", torch.Generator().manual_seed(0))
    torch.testing.assert_close(query, torch.tensor([[0.3, 0.4, 0.5]]))


def test_query_mixup_weights_sum_to_one_over_available_parts():
    embeddings, available = _query_inputs()
    query = compose_queries(embeddings, available, "mixup", torch.Generator().manual_seed(5))
    weights = mixup_weights(available, torch.Generator().manual_seed(5))[0]
    expected = weights[0] * torch.tensor([0.6, 0.8, 0.0]) + weights[2] * torch.tensor([0.0, 0.0, 1.0])
    torch.testing.assert_close(query[0], expected)
    assert weights[1] == 0 and 0 < weights[0] < 1 and torch.isclose(weights.sum(), torch.tensor(1.0))


def test_single_modality_and_switch_modes():
    embeddings, available = _query_inputs()
    generator = torch.Generator().manual_seed(0)
    torch.testing.assert_close(compose_queries(embeddings, available, "audio", generator), torch.tensor([[0.0, 0, 1]]))
    torch.testing.assert_close(
        compose_queries(embeddings, available, "switch", generator, switch_modality=0), torch.tensor([[0.6, 0.8, 0]])
    )
    # the step's modality (image) is missing: a random available one stands in
    fallback = compose_queries(embeddings, available, "switch", generator, switch_modality=1)
    assert any(torch.allclose(fallback[0], row) for row in (torch.tensor([0.6, 0.8, 0]), torch.tensor([0.0, 0, 1])))


def test_switch_mode_uses_one_modality_per_step(corpus):
    dataset = make(corpus, modality_mode="switch", modalities=["text", "audio"])
    for step in range(4):
        chosen = set()
        for position in range(6):
            example = dataset[(step, position)]
            for query, embeddings in zip(example["queries"], example["embeddings"]):
                normalised = torch.nn.functional.normalize(embeddings, dim=-1)
                chosen.add(next(m for m in (0, 2) if torch.allclose(query, normalised[m])))
        assert len(chosen) == 1


def test_single_modality_ablation_trains_only_on_items_that_have_it(corpus):
    dataset = make(corpus, modality_mode="image")
    assert dataset.dropped == ["i1", "i3", "i5"]
    assert [item.id for item in dataset.items] == ["i0", "i2", "i4"]
    for position in range(12):
        example = dataset[(0, position)]
        assert torch.allclose(example["queries"], torch.full((2, DIM), 0.5))  # the normalised picture embedding
    assert make(corpus, modality_mode="mixup").dropped == []


def test_ablation_without_any_usable_item_is_refused(corpus):
    items, _ = corpus
    table = QueryTable(items, cache=DictCache({item.id: {"text": torch.ones(DIM)} for item in items}))
    with pytest.raises(OmniSepError, match="No training item has an embedding for the query modalities image"):
        MixtureDataset(items, table, training=True, segment_samples=SEGMENT, modality_mode="image")


def test_items_missing_from_the_cache_are_refused_up_front(corpus):
    items, _ = corpus
    cache = DictCache({item.id: {"text": torch.ones(DIM)} for item in items[:4]})
    with pytest.raises(OmniSepError, match=r"2 item\(s\) are not in the embedding cache 'cache-folder' \(first: 'i4'\)"):
        QueryTable(items, cache=cache)


def test_too_few_labels_for_the_number_of_sources(corpus):
    with pytest.raises(OmniSepError, match="needs at least 4 labels; the manifest has 3"):
        make(corpus, num_sources=4)
