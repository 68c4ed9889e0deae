"""Query-Aug v2 through the public API with the bundled default model: known queries snap, unknown ones say so."""

from __future__ import annotations

import pytest
import torch

from omnisep.api import Query, Separator


@pytest.fixture(scope="module")
def separator():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Separator("default")
    torch.set_num_threads(threads)


def test_a_name_snaps_to_its_class_with_a_calibrated_score(separator):
    item = separator.prepare([Query(text="violin", query_aug=True)])[0]
    assert item.label == "playing violin"
    assert item.query_aug_match["known"] and item.query_aug_match["runner_up"] != "playing violin"
    assert 0.5 < item.query_aug_score <= 1.0
    assert torch.equal(item.vector, separator.bank.embeddings[separator.bank.labels.index("playing violin")])


def test_a_query_that_matches_nothing_is_left_as_it_is(separator):
    text = "quarterly tax return spreadsheet"
    item = separator.prepare([Query(text=text, query_aug=True)])[0]
    plain = separator.prepare([Query(text=text)])[0]
    assert not item.query_aug_match["known"]
    assert item.label.startswith(text) and "unknown (closest: " in item.label and "runner-up" in item.label
    assert torch.allclose(item.vector, plain.vector)
