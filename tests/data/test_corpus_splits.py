from collections import Counter

import numpy as np
import pytest

from omnisep.data.corpus import CLASSES, VOCABULARY, slug
from omnisep.data.corpus.build import split_sizes
from omnisep.data.corpus.instruments import INSTRUMENTS, programs_for_split
from omnisep.data.corpus.recordings import take_group
from omnisep.data.corpus.splits import assign_groups, make_mixtures


def test_assign_groups_sizes_by_count():
    assert set(assign_groups(["a"], seed=1).values()) == {"train"}
    assert sorted(assign_groups(["a", "b"], seed=1).values()) == ["test", "train"]
    assert sorted(assign_groups(["a", "b", "c"], seed=1).values()) == ["test", "train", "val"]
    # 10 groups: round(2.0) test, round(1.5) = 2 validation, 6 train
    counts = Counter(assign_groups([f"g{i}" for i in range(10)], seed=1).values())
    assert counts == {"train": 6, "val": 2, "test": 2}


def test_assign_groups_is_seeded_and_order_free():
    groups = [f"g{i}" for i in range(7)]
    first = assign_groups(groups, seed=5, key="dog barking")
    assert assign_groups(list(reversed(groups)), seed=5, key="dog barking") == first
    others = [assign_groups(groups, seed=s, key="dog barking") for s in range(6, 12)]
    assert any(other != first for other in others)


def test_take_group_joins_numbered_takes_only():
    assert take_group("minetest", "mods/default_grass_footstep.1.ogg") == "minetest:mods/default_grass_footstep"
    assert take_group("minetest", "mods/default_grass_footstep.3.ogg") == "minetest:mods/default_grass_footstep"
    assert take_group("widelands", "animals/bird1_02.ogg") == "widelands:animals/bird1"
    assert take_group("widelands", "animals/bird2_02.ogg") == "widelands:animals/bird2"
    assert take_group("megaglest", "sheep/sheep10.wav") == "megaglest:sheep/sheep"
    assert take_group("sonicpi", "samples/loop_amen_full.flac") == "sonicpi:samples/loop_amen"


def test_mixtures_pair_different_classes_of_one_split():
    items = [{"id": f"{label}-{split}-{i}", "label": label, "split": split}
             for label in ("a", "b", "c") for split in ("val", "test") for i in range(3)]
    rows = make_mixtures(items, "test", seed=3)
    assert len(rows) == 9
    by_id = {item["id"]: item for item in items}
    for row in rows:
        target = by_id[row.target]
        (interferer,) = [by_id[i] for i in row.interferers]
        assert target["split"] == interferer["split"] == "test"
        assert target["label"] != interferer["label"]
    assert [row.id for row in rows] == [f"mix-test-{i:05d}" for i in range(9)]
    assert make_mixtures(items, "test", seed=3) == rows
    assert make_mixtures(items, "test", seed=4) != rows


def test_mixtures_skip_a_split_with_one_class():
    items = [{"id": f"x{i}", "label": "a", "split": "val"} for i in range(3)]
    assert make_mixtures(items, "val", seed=0) == []


def test_split_sizes_add_up():
    assert split_sizes(60) == {"train": 42, "val": 9, "test": 9}
    assert split_sizes(3) == {"train": 2, "val": 0, "test": 1}
    assert sum(split_sizes(101).values()) == 101


def test_held_out_program_never_in_train_and_val():
    programs = INSTRUMENTS["playing piano"].programs
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        assert programs[-1] not in {programs_for_split(programs, split, rng) for _ in range(200)}
    test_picks = Counter(programs_for_split(programs, "test", rng) for _ in range(400))
    assert 150 < test_picks[programs[-1]] < 250  # about half
    assert programs_for_split((13,), "test", rng) == 13


@pytest.mark.parametrize("label", ["dog barking", "playing acoustic guitar", "speech"])
def test_vocabulary_labels_and_slugs(label):
    assert label in CLASSES
    assert slug(label) == label.replace(" ", "-")


def test_vocabulary_covers_the_required_classes():
    required = {"accordion", "acoustic guitar", "bagpipes", "banjo", "cello", "clarinet", "flute", "piano",
                "saxophone", "trumpet", "tuba", "violin", "xylophone", "drums", "dog", "cat", "cow", "horse",
                "pig", "sheep", "chicken", "rooster", "duck", "frog", "owl", "bird", "rain", "thunder", "water",
                "wind", "fire", "footsteps", "wood", "hammering", "engine", "bell", "speech"}
    text = " ".join(spec.label for spec in VOCABULARY)
    assert all(word in text for word in required)
    assert len({spec.label for spec in VOCABULARY}) == len(VOCABULARY)


def test_same_take_finds_a_band_limited_copy_but_not_another_recording():
    from scipy import signal

    from omnisep.data.corpus.recordings import same_take

    rng = np.random.default_rng(3)
    gusts = np.repeat(rng.uniform(0.05, 1.0, 40), 800)  # a 2 s level pattern
    wind = (rng.standard_normal(gusts.size) * gusts).astype(np.float32)
    copy_8khz = signal.sosfilt(signal.butter(8, 3800, fs=16000, output="sos"), wind).astype(np.float32)
    other = (rng.standard_normal(gusts.size) * np.repeat(rng.uniform(0.05, 1.0, 40), 800)).astype(np.float32)
    assert same_take(wind, copy_8khz)
    assert not same_take(wind, other)
