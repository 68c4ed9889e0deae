import json
from pathlib import Path

import pytest

from omnisep.data.manifest import ManifestItem, read_manifest, write_manifest
from omnisep.errors import OmniSepError


def test_csv_resolves_relative_paths_and_keeps_unknown_columns(tmp_path):
    (tmp_path / "m.csv").write_text(
        "id,audio,label,image,split,licence,duration\n"
        "a,clips/a.wav,dog barking,img/a.png,train,CC0,3.5\n"
        "b,/abs/b.flac,violin,,val,,\n"
    )
    a, b = read_manifest(tmp_path / "m.csv")
    assert a == ManifestItem(
        id="a", audio=tmp_path / "clips/a.wav", label="dog barking", image=tmp_path / "img/a.png",
        split="train", licence="CC0", extra={"duration": "3.5"},
    )
    assert b.audio == Path("/abs/b.flac") and b.image is None and b.split == "val" and b.licence is None


def test_jsonl_reads_objects_and_skips_blank_lines(tmp_path):
    rows = [{"id": "x", "audio": "x.wav", "label": "hiss", "video": "v/x.mp4", "tags": ["a", "b"]},
            {"id": "y", "audio": "y.wav", "label": "hum"}]
    (tmp_path / "m.jsonl").write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    x, y = read_manifest(tmp_path / "m.jsonl")
    assert x.video == tmp_path / "v/x.mp4" and x.extra == {"tags": ["a", "b"]}
    assert (y.id, y.label, y.audio) == ("y", "hum", tmp_path / "y.wav")


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("m.csv", "id,label\na,dog\n", "has no column audio"),
        ("m.csv", "id,audio,label\n", "lists no items"),
        ("m.csv", "id,audio,label\na,a.wav,dog\nb,,cat\n", "line 3: missing value for audio"),
        ("m.csv", "id,audio,label\na,a.wav,dog\na,b.wav,cat\n", "line 3: id 'a' already used on line 2"),
        ("m.csv", "id,audio,label\na,a.wav,dog,extra\n", "line 2: more cells"),
        ("m.jsonl", '{"id": "a", "audio": "a.wav", "label": "x"}\n{"id": "b", \n', "line 2: not valid JSON"),
        ("m.jsonl", '["a", "a.wav", "x"]\n', "line 1: expected a JSON object"),
        ("m.jsonl", '{"id": "a", "audio": 3, "label": "x"}\n', "line 1: field 'audio' must be a string"),
        ("m.txt", "id,audio,label\n", "must end in .csv or .jsonl"),
    ],
)
def test_bad_manifests_name_file_and_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(OmniSepError, match=message) as error:
        read_manifest(path)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(OmniSepError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_write_then_read_round_trips_with_relative_paths(tmp_path, suffix):
    items = [
        ManifestItem(id="a", audio=tmp_path / "c/a.wav", label="dog", image=tmp_path / "c/a.png",
                     split="train", source="sfx", package="pkg", licence="GPL-2+", extra={"note": "n"}),
        ManifestItem(id="b", audio=Path("/elsewhere/b.wav"), label="cat, small"),
    ]
    path = write_manifest(tmp_path / f"out{suffix}", items)
    text = path.read_text()
    assert "c/a.wav" in text and str(tmp_path) not in text  # stored relative to the manifest
    assert read_manifest(path) == items
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
