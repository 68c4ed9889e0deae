from __future__ import annotations

import json
import tracemalloc

import av
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from PIL import Image

from omnisep.data.cache import EmbeddingCache, build_cache
from omnisep.data.manifest import read_manifest
from omnisep.encoders.toy import ToyEncoder
from omnisep.errors import OmniSepError
from omnisep.images import centre_frames, video_frames

RATE = 16000


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_sounds(folder, count=4):
    paths = []
    for k in range(count):
        t = np.arange(RATE) / RATE
        path = folder / f"tone{k}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * (k + 1) * t)).astype(np.float32), RATE)
        paths.append(path.name)
    return paths


def write_manifest(folder, count, extra=None):
    sounds = write_sounds(folder)
    path = folder / f"manifest-{count}.jsonl"
    with open(path, "w") as handle:
        for i in range(count):
            row = {"id": f"item{i:05d}", "audio": sounds[i % len(sounds)], "label": f"label {i % 7}"}
            row.update((extra or {}).get(i, {}))
            handle.write(json.dumps(row) + "\n")
    return path


class CountingEncoder(ToyEncoder):
    """The toy encoder, counting how many queries it embeds, optionally interrupted after some audio calls."""

    def __init__(self, interrupt_after_audio_calls=None, **options):
        super().__init__(**options)
        self.counts = {"text": 0, "image": 0, "audio": 0}
        self.audio_calls = 0
        self.interrupt_after = interrupt_after_audio_calls

    def _embed_text(self, texts):
        self.counts["text"] += len(texts)
        return super()._embed_text(texts)

    def _embed_image(self, images):
        self.counts["image"] += len(images)
        return super()._embed_image(images)

    def _embed_audio(self, clips):
        self.audio_calls += 1
        if self.interrupt_after is not None and self.audio_calls > self.interrupt_after:
            raise KeyboardInterrupt
        self.counts["audio"] += len(clips)
        return super()._embed_audio(clips)


def peak_bytes(items, folder, **options):
    tracemalloc.start()
    try:
        build_cache(items, ToyEncoder(dim=1024), folder, modalities=("text", "audio"), **options)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_the_manifest_grows(tmp_path):
    small = read_manifest(write_manifest(tmp_path, 250))
    large = read_manifest(write_manifest(tmp_path, 1000))
    options = {"batch_size": 25, "shard_size": 50}
    small_peak = peak_bytes(small, tmp_path / "small", **options)
    large_peak = peak_bytes(large, tmp_path / "large", **options)
    assert len(EmbeddingCache(tmp_path / "large")) == 1000
    # One shard for everything (8 kB of embeddings per item) would add ~6 MB for the 750 extra
    # items, holding every decoded clip (64 kB each) ~48 MB; streaming adds only finished ids.
    assert large_peak < small_peak + 2_000_000, (small_peak, large_peak)


def test_resume_after_interruption_skips_finished_items(tmp_path):
    items = read_manifest(write_manifest(tmp_path, 1000))
    folder = tmp_path / "cache"
    interrupted = CountingEncoder(interrupt_after_audio_calls=4)  # batches of 50: dies inside the third shard
    with pytest.raises(KeyboardInterrupt):
        build_cache(items, interrupted, folder, modalities=("text", "audio"), batch_size=50, shard_size=100)
    index = json.loads((folder / "index.json").read_text())
    assert index["shards"] == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert not [p for p in (folder / "shards").iterdir() if p.suffix == ".tmp"]
    assert len(EmbeddingCache(folder)) == 200

    resumed = CountingEncoder()
    counts = build_cache(items, resumed, folder, modalities=("text", "audio"), batch_size=50, shard_size=100)
    assert counts == {"done": 800, "skipped": 200, "shards": 8}
    assert resumed.counts == {"text": 800, "audio": 800, "image": 0}

    again = CountingEncoder()
    assert build_cache(items, again, folder, modalities=("text", "audio"))["skipped"] == 1000
    assert again.counts == {"text": 0, "audio": 0, "image": 0}

    clean = tmp_path / "clean"
    build_cache(items, ToyEncoder(), clean, modalities=("text", "audio"), batch_size=50, shard_size=100)
    resumed_cache, clean_cache = EmbeddingCache(folder), EmbeddingCache(clean)
    for item_id in ("item00000", "item00199", "item00200", "item00999"):
        a, b = resumed_cache.get(item_id), clean_cache.get(item_id)
        assert torch.equal(a["text"], b["text"]) and torch.equal(a["audio"], b["audio"]) and a["image"] is None


def write_video(path, seconds=5, fps=5, size=24):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}
        for k in range(seconds * fps):
            pixels = np.zeros((size, size, 3), np.uint8)
            pixels[..., k % 3] = 40 * (k // fps) + 20  # colour changes every second
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_items_get_text_image_audio_and_video_embeddings(tmp_path):
    image = np.zeros((12, 12, 3), np.uint8)
    image[..., 0] = 250
    Image.fromarray(image).save(tmp_path / "red.png")
    write_video(tmp_path / "clip.mp4")
    manifest = write_manifest(tmp_path, 5, extra={0: {"image": "red.png"}, 1: {"video": "clip.mp4"}})
    encoder = ToyEncoder()
    build_cache(read_manifest(manifest), encoder, tmp_path / "cache", batch_size=2, shard_size=3)
    cache = EmbeddingCache(tmp_path / "cache", encoder_identity=encoder.identity())
    assert len(cache) == 5 and "item00004" in cache and cache.modalities == ("text", "image", "audio")
    first = cache.get("item00000")
    assert torch.allclose(first["text"], encoder.embed_text(["label 0"])[0])
    assert torch.allclose(first["image"], encoder.embed_image([image])[0], atol=1e-6)
    assert torch.allclose(first["audio"], encoder.embed_audio([tmp_path / "tone0.wav"])[0], atol=1e-6)
    # a video's image query: its 1 fps frames at centre-1, centre, centre+1, averaged, normalised
    frames = centre_frames(video_frames(tmp_path / "clip.mp4", fps=1))
    assert len(frames) == 3
    expected = F.normalize(encoder.embed_image(frames).mean(0), dim=0)
    assert torch.allclose(cache.get("item00001")["image"], expected, atol=1e-6)
    assert cache.get("item00002")["image"] is None
    assert cache.present("item00001") == {"text": True, "image": True, "audio": True}
    assert cache.present("item00002") == {"text": True, "image": False, "audio": True}
    with pytest.raises(OmniSepError, match="'nope' is not in the embedding cache"):
        cache.get("nope")


def test_another_encoder_or_other_modalities_are_refused(tmp_path):
    items = read_manifest(write_manifest(tmp_path, 3))
    build_cache(items, ToyEncoder(), tmp_path / "cache", modalities=("text",))
    with pytest.raises(OmniSepError, match="was made with encoder 'toy'.*use another output folder"):
        build_cache(items, ToyEncoder(dim=32), tmp_path / "cache", modalities=("text",))
    with pytest.raises(OmniSepError, match="holds text embeddings, not text, audio"):
        build_cache(items, ToyEncoder(), tmp_path / "cache", modalities=("audio", "text"))
    with pytest.raises(OmniSepError, match="was made with encoder"):
        EmbeddingCache(tmp_path / "cache", encoder_identity=ToyEncoder(dim=32).identity())
    with pytest.raises(OmniSepError, match="Unknown modality video"):
        build_cache(items, ToyEncoder(), tmp_path / "other", modalities=("video",))
    with pytest.raises(OmniSepError, match="does not exist"):
        EmbeddingCache(tmp_path / "nothing-here")


def test_a_bad_input_file_stops_with_its_name_and_keeps_finished_shards(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    manifest = write_manifest(tmp_path, 6, extra={4: {"image": "broken.png"}})
    with pytest.raises(OmniSepError, match="broken.png"):
        build_cache(read_manifest(manifest), ToyEncoder(), tmp_path / "cache", shard_size=2, batch_size=2)
    assert len(EmbeddingCache(tmp_path / "cache")) == 4


def test_sharded_embedding_reads_back_as_one_cache(tmp_path):
    from omnisep.cli import main

    manifest = tmp_path / "manifest.jsonl"
    rows = [{"id": f"item-{i:02d}", "audio": f"a{i}.wav", "label": f"label {i % 4}"} for i in range(23)]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for rank in range(3):  # what three torchrun processes do
        assert main(["embed", str(manifest), "-o", str(tmp_path / "sharded"), "--encoder", "toy", "--modalities", "text",
                     "--rank", str(rank), "--world-size", "3", "--shard-size", "4", "--quiet"]) == 0
    assert main(["embed", str(manifest), "-o", str(tmp_path / "single"), "--encoder", "toy", "--modalities", "text", "--quiet"]) == 0
    sharded, single = EmbeddingCache(tmp_path / "sharded"), EmbeddingCache(tmp_path / "single")
    assert sorted(sharded.ids()) == sorted(single.ids()) and len(sharded) == 23
    assert len(list((tmp_path / "sharded" / "ranks").iterdir())) == 3
    for item_id in single.ids():
        assert torch.equal(sharded.get(item_id)["text"], single.get(item_id)["text"])
    assert main(["embed", str(manifest), "-o", str(tmp_path / "x"), "--encoder", "toy", "--rank", "3", "--world-size", "3"]) == 2
