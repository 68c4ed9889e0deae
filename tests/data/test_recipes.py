import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from omnisep.data.manifest import read_manifest
from omnisep.data.recipes.engine import draw_mixtures, index_videos, read_split_list, ListedItem
from omnisep.data.recipes.music import prepare_music
from omnisep.data.recipes.vggsound import prepare_vggsound
from omnisep.errors import OmniSepError

SECONDS = 2.0


def write_video(path: Path, frequency: float, colour, seconds: float = SECONDS, rate: int = 44100):
    """A small mp4 like a downloaded clip: mpeg4 video (10 fps) and a stereo AAC sine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "stereo"
        picture = np.zeros((32, 32, 3), np.uint8)
        picture[:] = colour
        for _ in range(int(seconds * 10)):
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        t = np.arange(int(seconds * rate)) / rate
        signal = np.tile((0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), (2, 1))
        for start in range(0, signal.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(signal[:, start : start + 1024]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


# id, label, tone (Hz), colour
CLIPS = {
    "aaaaaaaaaa1": ("dog barking", 300.0, (250, 0, 0)),
    "bbbbbbbbbb1": ("playing violin", 500.0, (0, 250, 0)),
    "cccccccccc1": ("church bell ringing", 700.0, (0, 0, 250)),
    "aaaaaaaaaa2": ("dog barking", 350.0, (200, 0, 0)),
    "bbbbbbbbbb2": ("playing violin", 550.0, (0, 200, 0)),
    "cccccccccc2": ("church bell ringing", 750.0, (0, 0, 200)),
}


def clipsep_row(item_id, label):
    return f"data/vggsound/audio/{item_id[0]}/{item_id[1]}/{item_id}.wav,data/vggsound/preprocessed/{item_id},12,{label}\n"


@pytest.fixture(scope="module")
def vggsound_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("vgg")
    videos = root / "video"
    for item_id, (label, tone, colour) in CLIPS.items():
        # VGGSound download naming: <YouTube id>_<start seconds>.mp4, in nested folders
        write_video(videos / item_id[0] / f"{item_id}_000030.mp4", tone, colour)
    (videos / "broken_0000_000000.mp4").write_bytes(b"not a video at all")
    lists = root / "lists"
    lists.mkdir()
    (lists / "train.csv").write_text(clipsep_row("aaaaaaaaaa1", "dog barking") + clipsep_row("bbbbbbbbbb1", "playing violin")
                                     + clipsep_row("cccccccccc1", "church bell ringing"))
    (lists / "test.csv").write_text(
        "".join(clipsep_row(i, CLIPS[i][0]) for i in ("aaaaaaaaaa2", "bbbbbbbbbb2", "cccccccccc2"))
        + clipsep_row("missingvid0", "dog barking") + clipsep_row("broken_0000", "dog barking")
    )
    (lists / "test-good.csv").write_text("id,label,notes\naaaaaaaaaa2,dog barking,clean\nbbbbbbbbbb2,playing violin,\n")
    out = root / "out"
    result = prepare_vggsound(videos, out, {"train": lists / "train.csv", "test": lists / "test.csv"},
                              clean_list=lists / "test-good.csv", progress=False)
    return root, out, result


def test_audio_is_16k_mono_and_keeps_the_tone(vggsound_tree):
    _, out, _ = vggsound_tree
    audio, rate = sf.read(out / "audio" / "bbbbbbbbbb1.wav")
    assert rate == 16000 and audio.ndim == 1
    assert abs(len(audio) - SECONDS * 16000) < 0.05 * 16000  # AAC adds a little priming
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    peak_hz = np.argmax(spectrum) * 16000 / len(audio)
    assert peak_hz == pytest.approx(500.0, abs=2.0)


def test_frames_at_one_fps_numbered_from_one(vggsound_tree):
    _, out, _ = vggsound_tree
    frames = sorted((out / "frames" / "cccccccccc1").glob("*.jpg"))
    assert [f.name for f in frames] == ["000001.jpg", "000002.jpg"]
    pixel = np.asarray(Image.open(frames[0]))[16, 16]
    assert pixel[2] > 200 and pixel[0] < 40 and pixel[1] < 40  # blue clip


def test_manifest_lists_prepared_items_with_splits(vggsound_tree):
    _, out, result = vggsound_tree
    items = {item.id: item for item in read_manifest(out / "manifest.jsonl")}
    assert set(items) == set(CLIPS)
    assert items["aaaaaaaaaa1"].split == "train" and items["aaaaaaaaaa2"].split == "test"
    assert items["bbbbbbbbbb2"].label == "playing violin"
    assert items["aaaaaaaaaa2"].extra["clean"] == "true" and "clean" not in items["cccccccccc2"].extra
    assert items["aaaaaaaaaa1"].video.name == "aaaaaaaaaa1_000030.mp4" and items["aaaaaaaaaa1"].image is None
    assert items["aaaaaaaaaa1"].extra["frames"] == "frames/aaaaaaaaaa1" and items["aaaaaaaaaa1"].extra["frame_count"] == "2"
    assert result.counts["missing"] == 1 and result.counts["failed"] == 1
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["missing_videos"] == ["missingvid0"]
    assert [f["id"] for f in report["failed"]] == ["broken_0000"]


def test_test_mixtures_pair_other_classes_of_the_same_list(vggsound_tree):
    _, out, _ = vggsound_tree
    rows = [json.loads(line) for line in (out / "mixtures_test.jsonl").read_text().splitlines()]
    test_ids = {"aaaaaaaaaa2", "bbbbbbbbbb2", "cccccccccc2"}
    assert [row["target"] for row in rows] == ["aaaaaaaaaa2", "bbbbbbbbbb2", "cccccccccc2"]
    for row in rows:
        (interferer,) = row["interferers"]
        assert interferer in test_ids and CLIPS[interferer][0] != CLIPS[row["target"]][0]
    clean = [json.loads(line) for line in (out / "mixtures_clean_plus.jsonl").read_text().splitlines()]
    assert [row["target"] for row in clean] == ["aaaaaaaaaa2", "bbbbbbbbbb2"]
    assert all(row["interferers"][0] in test_ids for row in clean)


def test_rerun_reuses_outputs_and_draws_the_same_mixtures(vggsound_tree):
    root, out, _ = vggsound_tree
    wav = out / "audio" / "aaaaaaaaaa1.wav"
    before = (wav.stat().st_mtime_ns, (out / "mixtures_test.jsonl").read_text())
    prepare_vggsound(root / "video", out, {"train": root / "lists" / "train.csv", "test": root / "lists" / "test.csv"},
                     clean_list=root / "lists" / "test-good.csv", progress=False)
    assert (wav.stat().st_mtime_ns, (out / "mixtures_test.jsonl").read_text()) == before


def test_music_labels_and_clean_plus_interferers_from_vggsound(vggsound_tree, tmp_path):
    _, vgg_out, _ = vggsound_tree
    videos = tmp_path / "MUSIC" / "solo"
    write_video(videos / "acoustic_guitar" / "guitar00001.mp4", 220.0, (120, 60, 0))
    write_video(videos / "violin" / "violin000001.mp4", 660.0, (200, 200, 200))
    write_video(videos / "acoustic_guitar" / "guitar00002.mp4", 240.0, (120, 60, 0))
    write_video(videos / "violin" / "violin000002.mp4", 680.0, (200, 200, 200))
    test_list = tmp_path / "test.csv"
    test_list.write_text(
        "data/MUSIC/solo/audio/acoustic_guitar/guitar00001.wav,x,40,acoustic_guitar\n"
        "data/MUSIC/solo/audio/violin/violin000001.wav,x,40,violin\n"
    )
    train_list = tmp_path / "train.csv"
    train_list.write_text(
        "data/MUSIC/solo/audio/acoustic_guitar/guitar00002.wav,x,40,acoustic_guitar\n"
        "data/MUSIC/solo/audio/violin/violin000002.wav,x,40,violin\n"
    )
    with pytest.raises(OmniSepError, match="vggsound-manifest"):
        prepare_music(videos, tmp_path / "out", {"test": test_list}, clean_list=test_list, progress=False)
    result = prepare_music(videos, tmp_path / "out", {"train": train_list, "test": test_list}, clean_list=test_list,
                           vggsound_manifest=vgg_out / "manifest.jsonl", progress=False)
    items = {item.id: item for item in read_manifest(result.manifest)}
    assert items["guitar00001"].label == "acoustic guitar"
    assert items["vggsound/bbbbbbbbbb2"].split == "interferer" and items["vggsound/bbbbbbbbbb2"].audio.is_file()
    clean = [json.loads(line) for line in (result.out_dir / "mixtures_clean_plus.jsonl").read_text().splitlines()]
    assert [row["target"] for row in clean] == ["guitar00001", "violin000001"]
    assert all(row["interferers"][0].startswith("vggsound/") for row in clean)
    music_test = [json.loads(line) for line in (result.out_dir / "mixtures_test.jsonl").read_text().splitlines()]
    assert [row["interferers"] for row in music_test] == [["violin000001"], ["guitar00001"]]


def test_split_list_layouts_and_errors(tmp_path):
    clipsep = tmp_path / "a.csv"
    clipsep.write_text(clipsep_row("e2rM750cFGc", "playing didgeridoo"))
    assert read_split_list(clipsep) == [ListedItem("e2rM750cFGc", "playing didgeridoo")]
    bad = tmp_path / "b.csv"
    bad.write_text("just,three,columns\n")
    with pytest.raises(OmniSepError, match="b.csv.*line 1"):
        read_split_list(bad)
    with pytest.raises(OmniSepError, match="does not exist"):
        read_split_list(tmp_path / "nope.csv")
    empty = tmp_path / "c.csv"
    empty.write_text("id,label\n")
    with pytest.raises(OmniSepError, match="lists no items"):
        read_split_list(empty)


def test_video_index_prefers_exact_names(tmp_path):
    for name in ("x/abcdefghijk_000010.mp4", "y/abcdefghijk.mp4", "z/readme.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    index = index_videos(tmp_path)
    assert index["abcdefghijk"] == tmp_path / "y/abcdefghijk.mp4"
    assert index["abcdefghijk_000010"] == tmp_path / "x/abcdefghijk_000010.mp4"
    assert len(index) == 2


def test_draws_are_seeded_per_item():
    pool = [ListedItem(f"id{i}", f"class{i % 3}") for i in range(12)]
    first = draw_mixtures(pool[:4], pool, seed=7)
    assert first == draw_mixtures(pool[:4], pool, seed=7)
    assert first != draw_mixtures(pool[:4], pool, seed=8)
    # the draw of item k does not depend on how many items come before it
    assert draw_mixtures(pool[:4], pool, seed=7)[3].interferers == first[3].interferers
    # the recorded seed is the generator's entropy: default_rng(seed) repeats the row's draw
    assert all(row.seed == (7, index) for index, row in enumerate(first))


def test_vggsound_csv_layout_and_split_precedence(tmp_path):
    official = tmp_path / "vggsound.csv"
    official.write_text("aaaaaaaaaa1,30,dog barking,train\nbbbbbbbbbb1,0,playing violin,test\naaaaaaaaaa2,10,dog barking,train\n")
    assert read_split_list(official, split="train") == [ListedItem("aaaaaaaaaa1", "dog barking"), ListedItem("aaaaaaaaaa2", "dog barking")]
    assert read_split_list(official, split="test") == [ListedItem("bbbbbbbbbb1", "playing violin")]
    videos = tmp_path / "video"
    write_video(videos / "aaaaaaaaaa1_000030.mp4", 300.0, (250, 0, 0), seconds=1.0)
    write_video(videos / "aaaaaaaaaa2_000010.mp4", 320.0, (250, 0, 0), seconds=1.0)
    write_video(videos / "bbbbbbbbbb1_000000.mp4", 600.0, (0, 250, 0), seconds=1.0)
    val = tmp_path / "val.csv"
    val.write_text("id,label\naaaaaaaaaa2,dog barking\n")  # carved out of the training split
    result = prepare_vggsound(videos, tmp_path / "out", {"train": official, "val": val, "test": official}, progress=False)
    splits = {item.id: item.split for item in read_manifest(result.manifest)}
    assert splits == {"aaaaaaaaaa1": "train", "aaaaaaaaaa2": "val", "bbbbbbbbbb1": "test"}
