import json

import pytest

from omnisep.data.corpus.splits import make_mixtures
from omnisep.data.manifest import ManifestItem
from omnisep.data.mixtures import MixtureList, MixtureSpec, load_test_set, read_mixture_list
from omnisep.data.recipes.engine import ListedItem, draw_mixtures
from omnisep.errors import OmniSepError


def _items(ids):
    return [ManifestItem(id=i, audio=f"{i}.wav", label=i[0]) for i in ids]


def test_both_writers_write_rows_the_reader_reads_back(tmp_path):
    corpus_rows = [{"id": f"{label}{n}", "label": label, "split": "test"} for label in "abc" for n in range(2)]
    from_corpus = make_mixtures(corpus_rows, "test", seed=5)
    pool = [ListedItem(f"{label}{n}", label) for label in "abc" for n in range(2)]
    from_recipe = draw_mixtures(pool, pool, seed=5, id_prefix="test-")
    for name, rows in (("corpus", from_corpus), ("recipe", from_recipe)):
        path = MixtureList(rows).write(tmp_path / f"{name}.jsonl")
        assert list(MixtureList.read(path)) == rows
    # The corpus writer's bytes: one JSON object per line, keys id, target, interferers, seed.
    first = (tmp_path / "corpus.jsonl").read_text().splitlines()[0]
    assert list(json.loads(first)) == ["id", "target", "interferers", "seed"]
    assert isinstance(json.loads(first)["seed"], int)
    assert json.loads((tmp_path / "recipe.jsonl").read_text().splitlines()[1])["seed"] == [5, 1]


def test_seed_is_the_draws_generator_entropy():
    import numpy as np

    pool = [ListedItem(f"id{i}", f"class{i % 3}") for i in range(9)]
    for row, target in zip(draw_mixtures(pool[:3], pool, seed=11), pool[:3]):
        candidates = [item for item in pool if item.label != target.label]
        rng = np.random.default_rng(list(row.seed))
        assert row.interferers == (candidates[int(rng.integers(len(candidates)))].id,)


def test_old_lists_read_unchanged(tmp_path):
    # An old recipe list stored the row index as its seed; a hand-written one has no id or seed.
    path = tmp_path / "old.jsonl"
    path.write_text('{"id": "val-00000", "target": "a0", "interferers": ["b0"], "seed": 0}\n\n'
                    '{"target": "b1", "interferers": ["a1"]}\n')
    listed = MixtureList.read(path)
    assert [spec.name for spec in listed] == ["val-00000", "b1+a1"]
    assert read_mixture_list(path, _items(["a0", "b0", "a1", "b1"]), 2) == [[0, 1], [3, 2]]


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"target": "a0"}\n', "line 1: expected"),
        ('\n{"target": "a0", "interferers": "b0"}\n', "line 2: expected"),
        ('{"target": "a0", "interferers": ["zz"]}\n', "line 1: unknown item id zz"),
        ('{"target": "a0", "interferers": ["b0", "a1"]}\n', "line 1: 3 sources, but the run mixes 2"),
        ("\n", "lists no mixtures"),
    ],
)
def test_bad_lists_name_the_line(tmp_path, text, message):
    path = tmp_path / "mix.jsonl"
    path.write_text(text)
    with pytest.raises(OmniSepError, match=message):
        read_mixture_list(path, _items(["a0", "b0", "a1"]), 2)


def test_test_set_needs_its_manifest(tmp_path):
    MixtureList([MixtureSpec("a0", ("b0",))]).write(tmp_path / "mix.jsonl")
    with pytest.raises(OmniSepError, match="no manifest.jsonl beside it"):
        load_test_set(tmp_path / "mix.jsonl")
    with pytest.raises(OmniSepError, match="Test set .*missing.jsonl' does not exist"):
        load_test_set(tmp_path / "missing.jsonl")
