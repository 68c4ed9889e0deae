"""Query-Aug v2: all entries of a class count, calibrated probabilities, an unknown answer."""

from __future__ import annotations

import json

import pytest
import torch

from omnisep.errors import OmniSepError
from omnisep.querynet.words import ClassMatcher, Match, bank_entries, bank_words, calibrate, fit_calibration, read_queries
from omnisep.querynet.wordnet import WordNet


def _unit(*values):
    v = torch.tensor(values, dtype=torch.float32)
    return v / v.norm()


def _matcher():
    embeddings = torch.stack([_unit(1, 0, 0), _unit(1, 1, 0), _unit(0, 0, 1), _unit(0, 1, 1)])
    return ClassMatcher(["dog", "rain"], ["dog", "dog", "rain", "rain"], embeddings, ["dog", "woof", "rain", "drizzle"],
                        ["label", "synonym", "label", "description"], entry_temperature=0.05, temperature=0.1,
                        min_probability=0.6, min_cosine=0.5)


def test_every_entry_of_a_class_counts():
    matcher = _matcher()
    scores, best = matcher.class_scores(_unit(1, 1, 0)[None])
    assert best[0, 0] == pytest.approx(1.0)  # the synonym entry, not the label, is the nearest
    assert scores[0, 0] >= best[0, 0] - 1e-6  # a soft maximum is at least the maximum
    match = matcher.match(_unit(1, 1, 0.1)[None])[0]
    assert match.label == "dog" and match.runner_up == "rain" and match.known
    assert match.probability + match.runner_up_probability == pytest.approx(1.0)


def test_a_query_far_from_everything_is_unknown_not_snapped():
    matcher = _matcher()
    match = matcher.match(_unit(-1, -1, -1)[None])[0]
    assert not match.known and match.describe().startswith("unknown (closest: ")


def test_save_and_load_round_trip(tmp_path):
    matcher = _matcher()
    matcher.save(tmp_path / "bank.safetensors", {"note": "test"})
    loaded = ClassMatcher.load(tmp_path / "bank.safetensors")
    assert loaded.labels == matcher.labels and loaded.texts == matcher.texts
    assert loaded.match(_unit(0, 0.2, 1)[None])[0] == matcher.match(_unit(0, 0.2, 1)[None])[0]


def test_calibration_fits_a_temperature_and_thresholds():
    matcher = _matcher()
    queries = torch.stack([_unit(1, 0.3, 0), _unit(0, 0.3, 1), _unit(-1, -1, -1)])
    record = fit_calibration(matcher, queries, ["dog", "rain", None])
    assert 0 < record["temperature"] and 0 < record["min_probability"] <= 1
    assert record["calibration_unknown"] == 1 and record["calibration_known"] >= 2


def test_read_queries_adds_the_unknown_list_beside_it(tmp_path):
    (tmp_path / "descriptions-x.json").write_text(json.dumps({"dog": ["woof"]}))
    assert read_queries(tmp_path / "descriptions-x.json") == (["woof"], ["dog"])
    (tmp_path / "unknown-x.json").write_text(json.dumps(["a fax"]))
    assert read_queries(tmp_path / "descriptions-x.json") == (["woof", "a fax"], ["dog", None])


def test_wordnet_reader_and_bank_entries(tmp_path):
    """A two-synset database in WordNet's own layout: index lines point at data byte offsets."""
    first = "00000000 05 n 02 dog 0 domestic_dog 0 000 | a member of the genus Canis; \"the dog barked\"\n"
    offset = len(first.encode())
    second = f"{offset:08d} 05 n 01 rain 0 000 | water falling in drops\n"
    (tmp_path / "data.noun").write_text(first + second)
    (tmp_path / "index.noun").write_text(f"  license header line\ndog n 1 0 1 0 00000000\nrain n 1 0 1 0 {offset:08d}\n")
    (tmp_path / "index.verb").write_text("")
    wordnet = WordNet(tmp_path)
    assert wordnet.synset("dog") == (["dog", "domestic dog"], 'a member of the genus Canis; "the dog barked"')
    with pytest.raises(KeyError):
        wordnet.synset("dog", sense=2)
    import omnisep.querynet.words as words

    patched = {"dog barking": (("dog", "n", 1),)}
    original = words.WORDNET_SENSES
    words.WORDNET_SENSES = patched
    try:
        entries = bank_entries(["dog barking"], tmp_path, {"dog barking": ["a hound woofing"]})
    finally:
        words.WORDNET_SENSES = original
    kinds = dict((text, kind) for kind, text in entries["dog barking"])
    assert kinds["dog barking"] == "label" and kinds["domestic dog"] == "wordnet-word"
    assert kinds["dog: a member of the genus Canis"] == "wordnet-gloss" and kinds["a hound woofing"] == "description"
    assert len(entries["dog barking"]) == len({t.lower() for t in kinds})  # no duplicates


def _wordnet_with_kinds(folder):
    """A WordNet in its own layout whose pointers are known: dog -> kinds puppy (-> whelp) and an instance Lassie,
    dog -> the derived verb "bark"; cat -> kind puppy too (a word two classes share)."""

    def line(offset, words, pointers, gloss):
        names = " ".join(f"{w} 0" for w in words)
        marks = "".join(f" {symbol} {target:08d} {pos} {pair}" for symbol, target, pos, pair in pointers)
        return f"{offset:08d} 05 n {len(words):02x} {names} {len(pointers):03d}{marks} | {gloss}\n"

    # Each line's length does not depend on the offsets written in it (8 digits each), so two passes place them.
    plan = [("dog", ["dog"], [("~", "puppy", "n", "0000"), ("~i", "lassie", "n", "0000"), ("+", "bark", "v", "0101")]),
            ("puppy", ["puppy", "pup"], [("~", "whelp", "n", "0000")]), ("lassie", ["Lassie"], []),
            ("whelp", ["whelp"], []), ("cat", ["cat"], [("~", "puppy", "n", "0000")])]
    offsets = {key: 0 for key, _, _ in plan}
    for _ in range(2):
        text, at = "", 0
        for key, words, pointers in plan:
            offsets[key] = at
            entry = line(at, words, [(s, offsets.get(t, 0), pos, pair) for s, t, pos, pair in pointers], key)
            text += entry
            at += len(entry.encode())
    (folder / "data.noun").write_text(text)
    (folder / "data.verb").write_text("00000000 30 v 01 bark 0 000 | make barking sounds\n")
    (folder / "index.noun").write_text("".join(f"{key} n 1 0 1 0 {offsets[key]:08d}\n" for key, _, _ in plan))
    (folder / "index.verb").write_text("bark v 1 0 1 0 00000000\n")
    return WordNet(folder)


def test_wordnet_kinds_and_derived_words_follow_the_pointers(tmp_path):
    wordnet = _wordnet_with_kinds(tmp_path)
    assert wordnet.synset("dog") == (["dog"], "dog")
    assert wordnet.kinds("dog") == ["puppy", "pup"]  # the instance (a proper name) is not a kind
    assert wordnet.kinds("dog", depth=2) == ["puppy", "pup", "whelp"]
    assert wordnet.derived("dog") == ["bark"]
    import omnisep.querynet.words as words

    original = words.WORDNET_SENSES
    words.WORDNET_SENSES = {"dog barking": (("dog", "n", 1),), "cat meowing": (("cat", "n", 1),),
                            "bird chirping": (("dog", "n", 1),)}
    try:
        found = bank_words(["dog barking", "cat meowing"], tmp_path)
        assert found == {"dog barking": ["bark"]}  # puppy, pup and whelp are the cat's kinds too: nobody's
        assert bank_words(["bird chirping"], tmp_path) == {"bird chirping": ["bark"]}  # the bird has no kinds
        assert bank_words(["dog barking"], tmp_path, depth=1, derived=False) == {"dog barking": ["pup", "puppy"]}
    finally:
        words.WORDNET_SENSES = original


def test_words_only_entries_count_as_words_and_survive_a_round_trip(tmp_path):
    base = _matcher_with_words()
    matcher = _matcher_with_words()
    matcher.words = {"rain": ["downpour", "cloudburst"]}
    between = _unit(1, 0.5, 1)
    assert base.match(between[None], ["a cloudburst"])[0] == base.match(between[None])[0]  # a word it does not know
    assert matcher.match(between[None], ["a cloudburst"])[0].label == "rain"
    assert matcher.match(between[None])[0] == base.match(between[None])[0]  # no words given: the vector alone
    assert len(matcher.embeddings) == len(base.embeddings)  # never embedded
    matcher.save(tmp_path / "bank.safetensors")
    loaded = ClassMatcher.load(tmp_path / "bank.safetensors")
    assert loaded.words == matcher.words
    (after,), (before,) = loaded.match(between[None], ["a cloudburst"]), matcher.match(between[None], ["a cloudburst"])
    assert after.label == before.label and after.probability == pytest.approx(before.probability, abs=1e-3)  # float16 rows
    with pytest.raises(ValueError, match="owl"):
        ClassMatcher(["dog"], ["dog"], _unit(1, 0, 0)[None], ["dog"], ["label"], words={"owl": ["hoot"]})


def test_a_class_named_by_one_of_its_words_only_phrases_gains_the_mention_weight(tmp_path):
    matcher = _matcher_with_words()
    matcher.words = {"rain": ["downpour"], "dog": ["hound dog"]}
    query = _unit(1, 0.5, 1)
    plain, _ = matcher.class_scores(query[None], texts=["a downpour and a hound dog"])
    matcher.lexical["mention"] = 0.25
    named, _ = matcher.class_scores(query[None], texts=["a downpour and a hound dog"])
    assert (named - plain)[0].tolist() == pytest.approx([0.25, 0.25])
    other, _ = matcher.class_scores(query[None], texts=["a dog hound"])  # not the phrase in its order: BM25 only
    matcher.lexical["mention"] = 0.0
    assert other == pytest.approx(matcher.class_scores(query[None], texts=["a dog hound"])[0])
    matcher.lexical["mention"] = 0.25
    matcher.save(tmp_path / "bank.safetensors")
    assert ClassMatcher.load(tmp_path / "bank.safetensors").lexical["mention"] == 0.25
    queries = torch.stack([_unit(1, 0.3, 0), _unit(0, 0.3, 1), _unit(-1, -1, -1)])
    fit_calibration(matcher, queries, ["dog", "rain", None], ["woof", "downpour", "tax forms"], lexical_weight=0.5,
                    mention_weight=0.25)
    assert matcher.lexical["mention"] == 0.25 and matcher.lexical["weight"] == 0.5  # the calibration keeps the weight


def test_an_answer_unknown_only_for_its_distance_says_so():
    matcher = _matcher()
    matcher.min_probability, matcher.min_cosine = 0.0, 0.99  # every query is probable enough, few are close enough
    far, near = matcher.match(torch.stack([_unit(1, 0.2, 0.1), _unit(1, 0, 0)]))
    assert not far.known and far.far and "unknown (closest: dog, far from its entries)" in far.describe()
    assert near.known and not near.far
    matcher.min_probability = 1.01  # now improbable as well: an ordinary unknown answer
    (plain,) = matcher.match(_unit(1, 0.2, 0.1)[None])
    assert not plain.known and not plain.far and "unknown (closest: dog) p=" in plain.describe()


def test_match_is_plain_data():
    match = Match("dog", 0.9, 0.8, "rain", 0.1, True)
    assert match.to_dict()["runner_up"] == "rain" and "p=0.90" in match.describe()


def test_a_looser_cosine_quantile_raises_the_floor():
    queries = torch.stack([_unit(1, 0.1 * k, 0) for k in range(10)] + [_unit(0, 0.1 * k, 1) for k in range(10)])
    labels = ["dog"] * 10 + ["rain"] * 10
    strict = fit_calibration(_matcher(), queries, labels)["min_cosine"]
    loose = calibrate(_matcher(), *_matcher().class_scores(queries), labels, cosine_quantile=0.3)["min_cosine"]
    assert loose > strict


def test_the_picture_matcher_keeps_only_label_entries_and_reads_its_calibration(tmp_path):
    _matcher().save(tmp_path / "bank.safetensors")
    calibration = {"format": "omnisep-query-aug-pictures", "temperature": 0.2, "min_probability": 0.3, "min_cosine": 0.4}
    (tmp_path / "pictures.json").write_text(json.dumps(calibration))
    pictures = ClassMatcher.for_pictures(tmp_path / "bank.safetensors", tmp_path / "pictures.json")
    assert pictures.texts == ["dog", "rain"] and pictures.kinds == ["label", "label"]
    assert (pictures.temperature, pictures.min_probability, pictures.min_cosine) == (0.2, 0.3, 0.4)
    match = pictures.match(_unit(1, 1, 0)[None])[0]  # the dog's synonym entry is gone: cosine to the label only
    assert match.label == "dog" and match.cosine == pytest.approx(float(_unit(1, 1, 0) @ _unit(1, 0, 0)), abs=1e-3)
    (tmp_path / "pictures.json").write_text(json.dumps({**calibration, "format": "something else"}))
    with pytest.raises(OmniSepError, match="pictures.json.*missing or damaged"):
        ClassMatcher.for_pictures(tmp_path / "bank.safetensors", tmp_path / "pictures.json")


def test_what_the_separate_net_is_given_follows_the_bank(tmp_path):
    query = _unit(1, 0.6, 0.5)[None]
    far = _unit(-1, -1, -1)[None]
    matcher = _matcher()
    assert matcher.match(query)[0].given == (("dog", 1.0),)  # a bank without the key: snap the known answer...
    assert matcher.match(far)[0].given == () and "left as it is" in matcher.match(far)[0].describe()  # ...keep the unknown
    matcher.give = "snap"
    assert matcher.match(far)[0].given == ((matcher.match(far)[0].label, 1.0),)
    matcher.give = "blend-2"
    match = matcher.match(query)[0]
    p = matcher.probabilities(query)[0]
    (first, w1), (second, w2) = match.given
    assert (first, second) == ("dog", "rain") and w1 + w2 == pytest.approx(1.0)
    assert w1 / w2 == pytest.approx(float(p[0] / p[1]), rel=1e-4)  # the probabilities, renormalised over the two
    assert match.given_text() == f"{w1:.2f} dog + {w2:.2f} rain" and w2 >= 0.005
    assert "; separated as " + match.given_text() in match.describe()
    matcher.save(tmp_path / "bank.safetensors")
    loaded = ClassMatcher.load(tmp_path / "bank.safetensors").match(query)[0]  # the bank is stored in half precision
    assert [label for label, _ in loaded.given] == ["dog", "rain"] and loaded.given[0][1] == pytest.approx(w1, abs=1e-3)
    calibration = {"format": "omnisep-query-aug-pictures", "temperature": 0.2, "min_probability": 0.3, "min_cosine": 0.4}
    (tmp_path / "pictures.json").write_text(json.dumps({**calibration, "give": "snap"}))
    assert ClassMatcher.for_pictures(tmp_path / "bank.safetensors", tmp_path / "pictures.json").give == "snap"
    (tmp_path / "pictures.json").write_text(json.dumps({**calibration, "give": "everything"}))
    with pytest.raises(OmniSepError, match="pictures.json.*missing or damaged"):
        ClassMatcher.for_pictures(tmp_path / "bank.safetensors", tmp_path / "pictures.json")


def test_the_given_vector_is_the_row_or_the_blend_and_none_without_a_row():
    rows = torch.stack([_unit(2, 0, 0), _unit(0, 0, 3)]) * torch.tensor([[2.0], [3.0]])  # not unit length
    snap = Match("dog", 0.9, 0.8, "rain", 0.1, True, (("dog", 1.0),))
    assert torch.equal(snap.given_vector(["dog", "rain"], rows), rows[0])  # the row as it is
    blend = Match("dog", 0.6, 0.8, "rain", 0.4, True, (("dog", 0.6), ("rain", 0.4)))
    torch.testing.assert_close(blend.given_vector(["dog", "rain"], rows), torch.tensor([0.6, 0.0, 0.4]))  # eq. 1
    assert blend.given_vector(["dog"], rows[:1]) is None  # a given label the rows lack: the query stays
    assert Match("dog", 0.1, 0.2, "rain", 0.05, False).given_vector(["dog", "rain"], rows) is None


def _matcher_with_words(weight=0.5):
    matcher = _matcher()
    matcher.lexical = {"weight": weight, "temperature": 0.1, "min_probability": 0.6, "min_cosine": 0.5}
    return matcher


def test_a_descriptions_words_count_when_given():
    matcher = _matcher_with_words()
    between = _unit(1, 0.5, 1)  # as near the dog's entries as the rain's
    assert matcher.match(between[None], ["a drizzle outside"])[0].label == "rain"
    assert matcher.match(between[None], ["woof woof"])[0].label == "dog"
    without = _matcher()
    assert matcher.match(between[None])[0] == without.match(between[None])[0]  # no words: the vector alone, as before


def test_words_are_scored_without_the_left_out_entry():
    matcher = _matcher_with_words()
    query = _unit(0, 1, 1)[None]
    exclude = torch.zeros(1, 4, dtype=torch.bool)
    exclude[0, 3] = True  # the "drizzle" entry
    kept, _ = matcher.class_scores(query, texts=["drizzle"])
    left, _ = matcher.class_scores(query, exclude, texts=["drizzle"])
    dense, _ = matcher.class_scores(query, exclude)
    assert kept[0, 1] > left[0, 1] and left[0, 1] == pytest.approx(dense[0, 1])  # the word lived only in that entry


def test_a_lexical_calibration_is_fitted_beside_the_vector_one(tmp_path):
    matcher = _matcher()
    queries = torch.stack([_unit(1, 0.3, 0), _unit(0, 0.3, 1), _unit(-1, -1, -1)])
    plain = fit_calibration(_matcher(), queries, ["dog", "rain", None])
    record = fit_calibration(matcher, queries, ["dog", "rain", None], ["woof", "drizzle", "tax forms"], lexical_weight=0.5)
    assert record["temperature"] == plain["temperature"] and matcher.temperature == plain["temperature"]
    assert matcher.lexical["weight"] == 0.5 and matcher.lexical["temperature"] == record["lexical"]["temperature"]
    matcher.save(tmp_path / "bank.safetensors")
    loaded = ClassMatcher.load(tmp_path / "bank.safetensors")
    assert loaded.lexical == matcher.lexical
    assert loaded.match(queries, ["woof", "drizzle", "tax forms"]) == matcher.match(queries, ["woof", "drizzle", "tax forms"])
    with pytest.raises(ValueError):
        fit_calibration(_matcher(), queries, ["dog", "rain", None], lexical_weight=0.5)  # words to count, but none given


def test_the_shipped_bank_counts_words():
    matcher = ClassMatcher.load()
    assert matcher.lexical and matcher.lexical["weight"] > 0
    assert matcher.labels_only().lexical is None and not matcher.labels_only().words  # pictures have no words
    assert "mare" in matcher.words["horse neighing"] and "cellist" in matcher.words["playing cello"]
    assert "amazon" not in matcher.words.get("water flowing", [])  # instances (proper names) are not kinds
    from omnisep.encoders import get_encoder

    text = "the cellist rehearsing in the next room"  # a casual validation description (validation, not test)
    vector = get_encoder("bundled").embed_text([text])
    assert matcher.match(vector, [text])[0].label == "playing cello"
    matcher.words = {}
    assert matcher.match(vector, [text])[0].label != "playing cello"  # what the words-only entries change


def test_the_mixture_evidence_weighs_the_classes_when_the_matcher_records_a_power():
    matcher = _matcher()
    between = _unit(1, 0.6, 0.9)  # a little nearer the dog's entries than the rain's
    assert matcher.match(between[None])[0].label == "dog"
    assert matcher.match(between[None], presence={"rain": 1.0})[0].evidence is None  # no power recorded: not weighed
    matcher.calibrated({"temperature": 0.1, "min_probability": 0.6, "min_cosine": 0.5, "give": "snap", "mixture_evidence": 1.0})
    heard = matcher.match(between[None], presence={"rain": 0.9, "dog": 0.0})[0]
    assert heard.label == "rain" and heard.evidence == 1.0 and "what the mixture holds" in heard.describe()
    assert heard.probability + heard.runner_up_probability == pytest.approx(1.0)
    assert heard.to_dict()["evidence"] == 1.0
    assert matcher.match(between[None], presence={"dog": 0.9, "rain": 0.9})[0].label == "dog"  # both heard: the picture decides
    alone = matcher.match(between[None])[0]
    assert alone.label == "dog" and alone.evidence is None  # no scan given: the picture alone...
    assert alone.contenders == ("dog", "rain")  # ...and the labels a scan could still decide between
    matcher.evidence_power = 0.01  # so weak that the runner-up can never overtake the first
    assert matcher.match(between[None])[0].contenders == ()


def test_the_mixture_evidence_chooses_only_among_the_first_classes_when_the_matcher_records_a_limit():
    embeddings = torch.stack([_unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1)])
    matcher = ClassMatcher(["violin", "cello", "dog"], ["violin", "cello", "dog"], embeddings, ["violin", "cello", "dog"],
                           ["label"] * 3).calibrated({"temperature": 0.2, "min_probability": 0.0, "min_cosine": -1.0,
                                                      "give": "snap", "mixture_evidence": 2.0})
    picture = _unit(1, 0.8, 0.5)  # violin, then cello, then (further) dog
    holds = {"dog": 1.0, "violin": 0.0, "cello": 0.0}  # a recording of a dog: the pictured sound is absent
    assert matcher.match(picture[None], presence=holds)[0].label == "dog"  # unlimited: moved onto what is there
    assert set(matcher.match(picture[None])[0].contenders) == {"violin", "cello", "dog"}
    matcher.calibrated({"temperature": 0.2, "min_probability": 0.0, "min_cosine": -1.0, "give": "snap",
                        "mixture_evidence": 2.0, "mixture_evidence_top": 2})
    assert matcher.evidence_top == 2
    kept = matcher.match(picture[None], presence=holds)[0]
    assert kept.label == "violin" and kept.evidence == 2.0  # the dog is not among the picture's first two
    assert kept.probability + kept.runner_up_probability == pytest.approx(1.0)  # the dog dropped out
    assert matcher.match(picture[None], presence={"cello": 1.0})[0].label == "cello"  # the second may still win
    assert matcher.match(picture[None])[0].contenders == ("violin", "cello")


def test_the_shipped_picture_calibration_is_what_image_head_writes():
    from omnisep.query_aug import DEFAULT_PICTURES
    from omnisep.querynet.image_head import PICTURES_EVIDENCE, PICTURES_EVIDENCE_TOP, PICTURES_GIVE

    shipped = json.loads(DEFAULT_PICTURES.read_text())
    assert shipped["give"] == PICTURES_GIVE and shipped["mixture_evidence"] == PICTURES_EVIDENCE
    assert shipped["mixture_evidence_top"] == PICTURES_EVIDENCE_TOP
    matcher = ClassMatcher.for_pictures()
    assert matcher.evidence_power == PICTURES_EVIDENCE and matcher.evidence_top == PICTURES_EVIDENCE_TOP
