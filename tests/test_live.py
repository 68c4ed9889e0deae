"""Live streams: equality with the offline path, exact lengths and delay, the residual identity, bad input."""

import re

import numpy as np
import pytest

from omnisep.api import Query, Separator
from omnisep.apply import ChunkedSeparator, separate_array, separate_tensor
from omnisep.audio import load_audio, save_audio
from omnisep.errors import OmniSepError
from omnisep.live import BlockOnlineSeparator, LiveStream, split_latency
from omnisep.queries import QueryRows
from test_apply import QUERIES, lively_model, noise


def play(stream, audio, seed=0, largest=3000):
    """Push ``audio`` in blocks of random sizes; check the delay of every answer; return the concatenations."""
    rng = np.random.default_rng(seed)
    targets, residuals, start = [], [], 0
    while start < audio.shape[-1]:
        stop = min(audio.shape[-1], start + int(rng.integers(1, largest)))
        target, residual = stream.push(audio[..., start:stop])
        start = stop
        out_so_far = sum(t.shape[-1] for t in targets) + target.shape[-1]
        assert out_so_far == max(0, start - stream.latency_samples)
        targets.append(target)
        residuals.append(residual)
    target, residual = stream.finish()
    return np.concatenate(targets + [target], axis=-1), np.concatenate(residuals + [residual], axis=-1)


# Two outputs: query 0 with query 2 as a logit-space negative, and query 1 alone.
LOGIT_NEGATIVE = QueryRows.with_negatives([QUERIES[0], QUERIES[1]], [QUERIES[2], None], [1.5, 0.0])


@pytest.mark.parametrize("queries", [QUERIES, LOGIT_NEGATIVE], ids=["vectors", "logit-negative"])
def test_stream_equals_the_offline_path_when_the_lookahead_covers_the_context(queries):
    model = lively_model(depth=4)
    wave = noise(4.0)[: 4 * 16000 - 77]
    offline = separate_tensor(model, wave, queries, chunk_seconds=40).numpy()
    engine = BlockOnlineSeparator(model, queries, 1, lookahead_frames=48, hop_frames=4, context_frames=32, align=True)
    parts, rng, start = [], np.random.default_rng(3), 0
    x = wave.numpy()[None]
    while start < x.shape[1]:
        stop = start + int(rng.integers(1, 2500))
        parts.append(engine.push(x[:, start:stop]))
        start = stop
    parts.append(engine.finish())
    online = np.concatenate(parts, axis=-1)[:, 0]
    assert online.shape == offline.shape
    assert engine.steps > 40  # really many windows
    assert np.abs(online - offline).max() < 1e-4 * np.abs(offline).max()


def test_a_short_lookahead_stays_near_offline_and_costs_no_seams():
    model = lively_model(depth=4)
    wave = noise(2.0)
    offline = separate_tensor(model, wave, QUERIES[:1], chunk_seconds=40)[0].numpy()
    engine = BlockOnlineSeparator(model, QUERIES[:1], 1, lookahead_frames=2, hop_frames=4, context_frames=32, align=True)
    online = np.concatenate([engine.push(wave.numpy()[None]), engine.finish()], axis=-1)[0, 0]
    snr = 10 * np.log10((offline**2).sum() / ((online - offline) ** 2).sum())
    assert 10 < snr < 200


@pytest.mark.parametrize("rate,channels", [(16000, 1), (44100, 2), (8000, 3)])
def test_lengths_delay_and_residual_identity_for_any_rate_and_channels(rate, channels):
    model = lively_model(depth=4)
    audio = (0.1 * np.random.default_rng(rate).standard_normal((channels, int(1.3 * rate)))).astype(np.float32)
    stream = LiveStream(model, QUERIES[0], rate, channels, latency=0.25)
    target, residual = play(stream, audio, seed=channels)
    assert target.shape == residual.shape == audio.shape
    np.testing.assert_allclose(target + residual, audio, atol=1e-6, rtol=0)
    assert np.abs(target).max() > 0.01
    if rate == 16000:
        assert stream.latency_samples == 3840 and stream.latency == pytest.approx(0.24)
        assert stream.lookahead == pytest.approx(0.144) and stream.hop == pytest.approx(0.096)
    else:
        assert stream.latency > 0.24


def test_output_does_not_depend_on_block_sizes_and_one_channel_blocks_may_be_flat():
    model = lively_model(depth=4)
    audio = noise(2.0).numpy()
    first = play(LiveStream(model, QUERIES[0], latency=0.25), audio, seed=1)[0]
    second = play(LiveStream(model, QUERIES[0], latency=0.25), audio, seed=2, largest=200)[0]
    assert first.ndim == 1 and first.shape == audio.shape
    np.testing.assert_allclose(first, second, atol=1e-6, rtol=0)


def test_latency_split_and_its_limits():
    assert split_latency(0.25) == (6, 6)
    assert split_latency(1.0, hop=0.128) == (51, 8)
    assert split_latency(0.064) == (0, 1)
    for latency, hop in ((0.05, None), (float("nan"), None), (0.25, 0.5), (0.25, -1.0)):
        with pytest.raises(OmniSepError):
            split_latency(latency, hop)


def test_bad_blocks_and_a_closed_stream_raise_clear_errors():
    model = lively_model(depth=4)
    stream = LiveStream(model, QUERIES[0], 16000, 2, latency=0.1)
    with pytest.raises(OmniSepError, match=r"shape \[2, n\]"):
        stream.push(np.zeros(100, np.float32))
    with pytest.raises(OmniSepError, match=r"shape \[2, n\]"):
        stream.push(np.zeros((3, 100), np.float32))
    bad = np.zeros((2, 100), np.float32)
    bad[1, 5] = np.nan
    with pytest.raises(OmniSepError, match="NaN"):
        stream.push(bad)
    stream.push(np.zeros((2, 100), np.float32))
    stream.finish()
    with pytest.raises(OmniSepError, match="closed"):
        stream.push(np.zeros((2, 100), np.float32))
    with pytest.raises(OmniSepError, match="closed"):
        stream.finish()
    with pytest.raises(OmniSepError):
        LiveStream(model, QUERIES[0], 0, 1)
    with pytest.raises(OmniSepError):
        LiveStream(model, QUERIES[0], 16000, 0)


@pytest.mark.parametrize("engine", [ChunkedSeparator, BlockOnlineSeparator])
def test_both_16k_engines_check_blocks_with_one_rule(engine):
    separator = engine(lively_model(depth=4), QUERIES, 2)
    for bad in (np.zeros(100), np.zeros((3, 100)), np.zeros((2, 5, 5))):
        with pytest.raises(ValueError, match=rf"^expected a block \[2, n\], got shape {re.escape(str(bad.shape))}$"):
            separator.push(bad)
    separator.push(np.zeros((2, 300), np.float64))  # any real dtype, taken as float32
    assert separator.received == 300 and separator._buffer.dtype == np.float32
    separator.finish()
    with pytest.raises(RuntimeError, match=r"^push\(\) after finish\(\)$"):
        separator.push(np.zeros((2, 10), np.float32))
    with pytest.raises(RuntimeError, match=r"^finish\(\) called twice$"):
        separator.finish()
    assert separator.total == 300


def test_separator_stream_with_queries_negative_queries_and_a_query_change(tiny_checkpoint, tmp_path):
    separator = Separator(tiny_checkpoint)
    rate = 22050
    path = tmp_path / "mix.wav"
    save_audio(path, (0.2 * np.random.default_rng(0).standard_normal((2, int(1.5 * rate)))).astype(np.float32), rate)
    audio, rate = load_audio(path)  # a file played as a stream
    stream = separator.stream(text="dog barking", negative_text="speech", sample_rate=rate, channels=2, latency=0.25)
    assert "dog barking" in stream.label and "speech" in stream.label
    half = audio.shape[1] // 2
    t1, r1 = stream.push(audio[:, :half])
    stream.set_query(Query(text="violin"))
    assert stream.label == "violin"
    t2, r2 = stream.push(audio[:, half:])
    t3, r3 = stream.finish()
    target = np.concatenate([t1, t2, t3], axis=1)
    residual = np.concatenate([r1, r2, r3], axis=1)
    assert target.shape == audio.shape
    np.testing.assert_allclose(target + residual, audio, atol=1e-6, rtol=0)
    # Before the query change the stream follows the offline separation with the first query closely.
    vector = separator.embed_query(text="dog barking", negative_text="speech")
    offline = separate_array(separator.model, audio, rate, vector[None])[0]
    early = slice(0, t1.shape[1] // 2)
    error = target[:, early] - offline[:, early]
    assert np.sqrt((error**2).mean()) < 0.5 * np.sqrt((offline[:, early] ** 2).mean())
    with pytest.raises(OmniSepError):
        separator.stream(text="dog", latency=0.01)
