"""Segments of a recording with known on/off times (the band model, conftest), and their exports."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from omnisep.errors import OmniSepError
from omnisep.scan import scan, scan_file
from omnisep.segments import (
    Segment,
    audacity_labels,
    export,
    find_segments,
    found_labels,
    segments_csv,
)

SR = 16000


@pytest.fixture(scope="module")
def on_off(band_separator):
    """The low tone sounds from 1.0 to 2.5 s and again from 3.25 to 3.5 s; the high tone all 4 s."""
    low, high = band_separator.tones(low_on=(1.0, 2.5))
    low2, _ = band_separator.tones(low_on=(3.25, 3.5))
    return scan(band_separator, low + low2 + high, SR, frame_seconds=0.25)


def test_segments_follow_the_known_on_and_off_times(on_off):
    # Ratio of "low": 0.35 while its tone sounds, 0.03 (the leak of the high tone) otherwise.
    segments = find_segments(on_off, threshold=0.2)
    by_label = {}
    for segment in segments:
        by_label.setdefault(segment.label, []).append((segment.start, segment.end))
    assert set(by_label) == {"low", "low-ish", "high", "hum"}
    assert by_label["low"] == [(1.0, 2.5), (3.25, 3.5)]
    assert by_label["high"] == [(0.0, 4.0)]  # it sounds throughout: 0.35 of the energy beside "low", 0.67 alone
    low = [s for s in segments if s.label == "low"][0]
    assert low.confidence == pytest.approx(0.353, abs=0.01)
    assert [s.start for s in segments] == sorted(s.start for s in segments)


def test_short_runs_are_dropped_and_gaps_bridged(on_off):
    segments = find_segments(on_off, threshold=0.2, min_seconds=0.5)
    assert [(s.start, s.end) for s in segments if s.label == "low"] == [(1.0, 2.5)]
    bridged = find_segments(on_off, threshold=0.2, merge_gap=0.75)
    assert [(s.start, s.end) for s in bridged if s.label == "low"] == [(1.0, 3.5)]
    # The bridged frames (ratio 0.03) count in the confidence, the mean ratio over the segment.
    assert [s for s in bridged if s.label == "low"][0].confidence < 0.353


def test_threshold_decides_what_is_found(on_off):
    assert [on_off.labels[i] for i in found_labels(on_off, 0.3)] != []
    assert "hum" not in [on_off.labels[i] for i in found_labels(on_off, 0.3)]  # hum's ratio is 0.25
    assert find_segments(on_off, threshold=0.99) == []
    with pytest.raises(OmniSepError, match="between 0 and 1"):
        find_segments(on_off, threshold=1.5)


def test_text_formats():
    segments = [Segment("dog barking", 0.5, 1.25, 0.61234), Segment("a\tb", 2.0, 3.0, 0.5)]
    rows = list(csv.reader(io.StringIO(segments_csv(segments))))
    assert rows == [["label", "start", "end", "confidence"], ["dog barking", "0.500", "1.250", "0.6123"],
                    ["a\tb", "2.000", "3.000", "0.5000"]]
    # Audacity: start<TAB>end<TAB>label, one label per line (tabs in a label would break the track).
    assert audacity_labels(segments) == "0.500000\t1.250000\tdog barking\n2.000000\t3.000000\ta b\n"


def test_export_writes_four_files_and_refuses_to_overwrite(on_off, tmp_path):
    segments = find_segments(on_off, threshold=0.3)
    paths = export(on_off, segments, tmp_path, "street", threshold=0.3, input="street.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "street.labels.txt", "street.scan.json", "street.segments.csv", "street.timeline.png"]
    summary = json.loads(paths["json"].read_text())
    assert summary["input"] == "street.wav" and summary["threshold"] == 0.3
    assert [f["label"] for f in summary["found"]] == [on_off.labels[i] for i in found_labels(on_off, 0.3)]
    assert summary["segments"] == [s.to_dict() for s in segments]
    lines = paths["audacity"].read_text().splitlines()
    assert len(lines) == len(segments) and all(len(line.split("\t")) == 3 for line in lines)
    with Image.open(paths["timeline"]) as image:
        assert image.format == "PNG" and image.width > 800
    with pytest.raises(OmniSepError, match="already exists"):
        export(on_off, segments, tmp_path, "street")
    with pytest.raises(OmniSepError, match="does not exist"):
        export(on_off, segments, tmp_path / "missing", "street")


def test_a_streamed_file_scans_like_the_array(band_separator, tmp_path):
    """A 44.1 kHz stereo file read in many blocks, resampled as a stream."""
    import soundfile as sf

    from omnisep.audio import resample

    low, high = band_separator.tones(seconds=6.0, low_on=(2.0, 4.0), rate=44100)
    stereo = np.stack([low + high, low + 0.5 * high])
    path = tmp_path / "long.wav"
    sf.write(path, stereo.T, 44100, subtype="FLOAT")
    seen = []
    streamed = scan_file(band_separator, path, frame_seconds=0.5, on_input=seen.append)
    assert sum(seen) == stereo.shape[1] and len(seen) > 1  # read in blocks, progress reported
    whole = scan(band_separator, stereo, 44100, frame_seconds=0.5)
    np.testing.assert_allclose(streamed.energy_ratio, whole.energy_ratio, atol=1e-5)
    assert streamed.duration == pytest.approx(6.0, abs=1e-3)
    segments = find_segments(streamed, threshold=0.2)
    assert [(s.start, s.end) for s in segments if s.label == "low"] == [(2.0, 4.0)]
    assert resample(stereo.mean(0), 44100, SR).size == round(streamed.duration * SR)


def test_memory_of_a_file_scan_does_not_grow_with_its_length(tiny_checkpoint, tmp_path):
    """Python-side peak memory (numpy buffers, traced) of a 100 s and a 400 s scan: the same."""
    import tracemalloc

    import soundfile as sf

    from omnisep.states import load_checkpoint

    checkpoint = load_checkpoint(tiny_checkpoint)
    rng = np.random.default_rng(0)
    peaks = {}
    for seconds in (100, 400):
        path = tmp_path / f"long_{seconds}.wav"
        with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as out:
            for _ in range(seconds // 10):
                out.write(0.1 * rng.standard_normal(10 * SR))
        tracemalloc.start()
        result = scan_file(checkpoint, path)
        peaks[seconds] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result.energy_ratio.shape == (3, seconds * 2)
    # 360 s more input is 23 MB more of float32 samples; the peak may grow by the per-frame ratios only.
    assert peaks[400] - peaks[100] < 1e6, peaks
