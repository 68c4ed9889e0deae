import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from omnisep.audio import AudioReader, AudioWriter, downmix, load_audio, resample, save_audio
from omnisep.errors import OmniSepError

RATE = 44100


def tone(freq=440.0, seconds=1.0, rate=RATE, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def stereo(seconds=1.0, rate=RATE):
    return np.stack([tone(440, seconds, rate), tone(660, seconds, rate, 0.25)])


def dominant_frequency(x, rate):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * rate / len(x)


def write_with_pyav(path, audio, rate, codec, sample_format="fltp"):
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=rate, layout="stereo")
    if sample_format == "fltp":
        frame = av.AudioFrame.from_ndarray(audio, format="fltp", layout="stereo")
    else:  # packed 16-bit: one row of interleaved samples
        ints = np.round(audio.T * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(ints, format="s16", layout="stereo")
    frame.sample_rate = rate
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix,subtype,tolerance",
    [(".wav", "PCM_16", 1 / 32768), (".wav", "PCM_24", 1 / 2**23), (".wav", "FLOAT", 0.0), (".flac", "PCM_16", 1 / 32768), (".flac", "PCM_24", 1 / 2**23)],
)
def test_lossless_round_trip(tmp_path, suffix, subtype, tolerance):
    audio = stereo()
    path = tmp_path / f"x{suffix}"
    peak = save_audio(path, audio, RATE, subtype=subtype)
    assert peak == pytest.approx(0.5, abs=1e-6)
    loaded, rate = load_audio(path)
    assert rate == RATE and loaded.dtype == np.float32 and loaded.shape == audio.shape
    assert np.abs(loaded - audio).max() <= tolerance
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize("fmt,subtype,suffix", [("OGG", "VORBIS", ".ogg"), ("MP3", "MPEG_LAYER_III", ".mp3")])
def test_lossy_formats_keep_the_content(tmp_path, fmt, subtype, suffix):
    path = tmp_path / f"x{suffix}"
    sf.write(path, stereo().T, RATE, format=fmt, subtype=subtype)
    loaded, rate = load_audio(path)
    assert rate == RATE and loaded.shape[0] == 2
    assert abs(loaded.shape[1] - RATE) < 2000
    assert dominant_frequency(loaded[0], rate) == pytest.approx(440, abs=2)
    assert dominant_frequency(loaded[1], rate) == pytest.approx(660, abs=2)
    assert np.abs(loaded[0]).max() == pytest.approx(0.5, abs=0.05)


def test_audio_track_of_an_mp4_with_aac(tmp_path):
    path = tmp_path / "clip.mp4"
    write_with_pyav(path, stereo(), RATE, "aac")
    loaded, rate = load_audio(path)
    assert rate == RATE and loaded.shape[0] == 2
    assert RATE <= loaded.shape[1] <= RATE + 3 * 1024  # AAC adds priming and padding frames
    assert dominant_frequency(loaded[0], rate) == pytest.approx(440, abs=2)
    assert dominant_frequency(loaded[1], rate) == pytest.approx(660, abs=2)
    assert np.abs(loaded[1]).max() == pytest.approx(0.25, abs=0.03)


def test_packed_integer_pcm_through_pyav_is_exact(tmp_path):
    # An MKV with 16-bit PCM: libsndfile cannot open it, FFmpeg decodes packed s16.
    audio = stereo(0.5)
    path = tmp_path / "pcm.mkv"
    write_with_pyav(path, audio, RATE, "pcm_s16le", sample_format="s16")
    loaded, rate = load_audio(path)
    expected = np.round(audio * 32767) / 32768
    assert rate == RATE and loaded.shape == audio.shape
    assert np.abs(loaded - expected).max() < 1e-6


def test_resampling_round_trip_is_transparent_for_band_limited_audio():
    t = np.arange(2 * RATE) / RATE
    signal = sum(0.2 * np.sin(2 * np.pi * f * t + f) for f in (110, 440, 1234.5, 3000, 6500)).astype(np.float32)
    down = resample(signal, RATE, 16000)
    assert down.shape == (32000,)
    back = resample(down, 16000, RATE)
    assert back.shape == signal.shape
    # away from the abrupt start and end, VHQ is transparent below 8 kHz
    assert np.abs(back - signal)[2000:-2000].max() < 3e-4
    two_channels = resample(np.stack([signal, -signal]), RATE, 16000)
    assert two_channels.shape == (2, 32000)
    np.testing.assert_allclose(two_channels[0], down, atol=1e-6)
    np.testing.assert_allclose(two_channels[1], -down, atol=1e-6)


def test_load_with_target_rate_and_mono(tmp_path):
    path = tmp_path / "x.wav"
    save_audio(path, np.stack([tone(440), tone(440)]), RATE, subtype="FLOAT")
    loaded, rate = load_audio(path, sample_rate=16000, mono=True)
    assert rate == 16000 and loaded.shape == (1, 16000)
    np.testing.assert_allclose(downmix(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)), [[0.5, 0.5]])


def test_reader_blocks_add_up_to_the_whole_file(tmp_path):
    path = tmp_path / "x.flac"
    audio = stereo()
    save_audio(path, audio, RATE, subtype="PCM_24")
    reader = AudioReader(path, block_frames=1000)
    blocks = list(reader)
    assert {b.shape[1] for b in blocks[:-1]} == {1000}
    assert reader.frames_read == RATE and reader.duration_estimate == pytest.approx(1.0)
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), load_audio(path)[0])


# -- errors ------------------------------------------------------------------------------------


def error_of(path):
    with pytest.raises(OmniSepError) as info:
        load_audio(path)
    message = str(info.value)
    assert str(path) in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    return message


def test_missing_empty_and_folder(tmp_path):
    assert "does not exist" in error_of(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    assert "empty (0 bytes)" in error_of(tmp_path / "empty.wav")
    assert "is a folder" in error_of(tmp_path)


def test_truncated_wav_and_mp3(tmp_path):
    whole = tmp_path / "whole.wav"
    save_audio(whole, stereo(), RATE)
    data = whole.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    assert "truncated" in error_of(tmp_path / "cut.wav")
    sf.write(tmp_path / "whole.mp3", stereo(2.0).T, RATE, format="MP3")
    data = (tmp_path / "whole.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 2])
    assert "truncated" in error_of(tmp_path / "cut.mp3")


def test_corrupt_flac_and_garbage_with_an_audio_suffix(tmp_path):
    save_audio(tmp_path / "whole.flac", stereo(), RATE)
    data = (tmp_path / "whole.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    assert "corrupt or truncated" in error_of(tmp_path / "cut.flac")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    assert "corrupt or not really a wav file" in error_of(tmp_path / "noise.wav")


def test_unknown_format(tmp_path):
    (tmp_path / "notes.txt").write_text("not audio at all\n" * 50)
    assert "not in a supported audio or video format" in error_of(tmp_path / "notes.txt")


def test_video_without_audio(tmp_path):
    path = tmp_path / "silent_film.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    for _ in range(3):
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    assert "has no audio stream" in error_of(path)


def test_nan_and_inf_samples(tmp_path):
    audio = tone()
    audio[100] = np.nan
    sf.write(tmp_path / "nan.wav", audio, RATE, subtype="FLOAT")
    assert "NaN or infinite" in error_of(tmp_path / "nan.wav")
    audio[100] = np.inf
    sf.write(tmp_path / "inf.wav", audio, RATE, subtype="FLOAT")
    assert "NaN or infinite" in error_of(tmp_path / "inf.wav")


def test_zero_length(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros((0, 2), np.float32), RATE)
    assert "zero length" in error_of(tmp_path / "zero.wav")


def test_near_silence_is_a_warning_not_an_error(tmp_path):
    path = tmp_path / "quiet.wav"
    save_audio(path, tone(amplitude=1e-6), RATE, subtype="FLOAT")
    with pytest.warns(UserWarning, match=r"near-silent \(peak -120\.0 dBFS\)"):
        audio, _ = load_audio(path)
    assert audio.shape == (1, RATE)


# -- writing -----------------------------------------------------------------------------------


def test_clipping_warns_with_the_peak_and_float_keeps_values(tmp_path):
    loud = np.array([[0.0, 1.5, -2.0, 0.5]], np.float32)
    with pytest.warns(UserWarning, match=r"peak 2\.000 \(\+6\.0 dBFS\)"):
        assert save_audio(tmp_path / "loud.wav", loud, RATE) == 2.0
    clipped, _ = load_audio(tmp_path / "loud.wav")
    np.testing.assert_allclose(clipped, [[0.0, 32767 / 32768, -1.0, 0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_audio(tmp_path / "loud_float.wav", loud, RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "loud_float.wav")[0], loud)


def test_existing_output_needs_overwrite_and_input_is_untouched(tmp_path):
    path = tmp_path / "out.wav"
    save_audio(path, tone(), RATE)
    before = path.read_bytes()
    with pytest.raises(OmniSepError, match="already exists; pass --overwrite"):
        save_audio(path, -tone(), RATE)
    assert path.read_bytes() == before
    save_audio(path, -tone(), RATE, overwrite=True)
    assert path.read_bytes() != before


def test_bad_output_choices(tmp_path):
    with pytest.raises(OmniSepError, match="FLAC cannot store float"):
        save_audio(tmp_path / "x.flac", tone(), RATE, subtype="FLOAT")
    with pytest.raises(OmniSepError, match=r"must end in \.wav or \.flac"):
        save_audio(tmp_path / "x.mp3", tone(), RATE)
    assert list(tmp_path.iterdir()) == []


def test_streaming_writer_matches_save_audio_and_aborts_cleanly(tmp_path):
    audio = stereo()
    save_audio(tmp_path / "whole.wav", audio, RATE, subtype="PCM_24")
    with AudioWriter(tmp_path / "blocks.wav", RATE, 2, subtype="PCM_24") as writer:
        for start in range(0, audio.shape[1], 5000):
            writer.write(audio[:, start : start + 5000])
    assert (tmp_path / "blocks.wav").read_bytes() == (tmp_path / "whole.wav").read_bytes()

    with pytest.raises(RuntimeError):
        with AudioWriter(tmp_path / "broken.wav", RATE, 2) as writer:
            writer.write(audio)
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.wav", "whole.wav"]

    writer = AudioWriter(tmp_path / "loud.flac", RATE, 1)
    writer.write(np.array([[3.0, 0.0]], np.float32))
    with pytest.warns(UserWarning, match=r"peak 3\.000"):
        assert writer.close() == 3.0
    assert Path(tmp_path / "loud.flac").exists()
