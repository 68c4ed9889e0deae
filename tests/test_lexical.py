"""A description's words against the Query-Aug bank: stems, stop words, BM25 and leaving entries out."""

from __future__ import annotations

import math

import pytest

from omnisep.lexical import B, K1, LexicalIndex, MentionIndex, tokens, words


def test_words_are_stemmed_and_function_words_dropped():
    assert words("The dogs are barking at the mailman, loudly!") == ["dog", "bark", "mailman", "loud"]
    assert words("a sound of something") == []  # nothing that says which class


def test_bm25_value_of_one_word_by_hand():
    index = LexicalIndex(["dog barking", "dog", "rain falling"], [0, 0, 1], classes=2)
    # class 0 holds dog x2 and bark (3 words), class 1 rain and fall (2): average length 2.5; "bark" is in one of 2 classes
    idf = math.log(1 + (2 - 1 + 0.5) / (1 + 0.5))
    expected = idf * 1 * (K1 + 1) / (1 + K1 * (1 - B + B * 3 / 2.5))
    scores = index.scores(["barks"])
    assert scores[0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert scores[0, 1].item() == 0.0


def test_a_word_every_class_shares_counts_less_than_a_rare_one():
    index = LexicalIndex(["cow mooing in the field", "horse neighing in the field", "field recording"], [0, 1, 2], classes=3)
    rare, common = index.scores(["mooing", "field"])
    assert rare[0] > common[0] > 0


def test_leaving_an_entry_out_removes_its_words_from_its_class():
    index = LexicalIndex(["duck quacking", "mallard on a pond", "frog croaking"], [0, 0, 1], classes=2)
    assert index.scores(["a mallard"])[0, 0] > 0
    assert index.scores(["a mallard"], leave_out=[[1]])[0, 0] == 0  # the only entry with the word is left out
    kept = index.scores(["duck"], leave_out=[[1]])[0, 0]
    assert kept > 0 and kept != index.scores(["duck"])[0, 0]  # the shorter class document changes the weight


def test_a_mention_is_a_whole_phrase_of_stemmed_words():
    index = MentionIndex(["mare", "licorice stick", "b-flat clarinet", "grand"], [0, 1, 1, 2], classes=3)
    assert tokens("The Mares, neighing") == ["the", "mare", "neigh"]  # stop words kept: a phrase may hold one
    found = index.mentions(["two mares at the stable", "jazz on a licorice stick", "a licorice shop with a stick",
                            "my b-flat clarinet", "a grandstand", "a mare and a grand piano", ""])
    assert found.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1], [0, 0, 0]]
