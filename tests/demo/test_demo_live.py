"""The live page's handlers fed a file chunk by chunk, as the browser's microphone stream would."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile as sf

from omnisep.api import Separator
from omnisep.demo.live import (
    NO_QUERY,
    LiveSession,
    decode_playback,
    live_step,
    live_stop,
)

RATE = 48000  # what browsers usually record at


@pytest.fixture(scope="module")
def separator(tiny_checkpoint):
    return Separator(tiny_checkpoint)


@pytest.fixture(scope="module")
def microphone():
    """3 s of a stereo int16 'microphone': a tone in noise, with the browser's chunking (about 250 ms, uneven)."""
    rng = np.random.default_rng(5)
    t = np.arange(3 * RATE) / RATE
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    right = 0.2 * np.sin(2 * np.pi * 660 * t) + 0.05 * rng.standard_normal(t.size)
    samples = np.round(np.stack([left, right], axis=1) * 32767).astype(np.int16)
    sizes = rng.integers(9000, 15000, 40)
    edges = np.concatenate([[0], np.cumsum(sizes)])
    edges = edges[edges < samples.shape[0]].tolist() + [samples.shape[0]]
    return samples, [(RATE, samples[a:b]) for a, b in itertools.pairwise(edges)]


def decode(payload: str | None) -> np.ndarray:
    """What the page plays for one reply."""
    if payload is None:
        return np.zeros(0, np.float32)
    rate, samples = decode_playback(payload)
    assert rate == RATE and samples.ndim == 1
    return samples


def read(path):
    audio, rate = sf.read(path, dtype="float32")
    assert rate == RATE
    return audio


def run(separator, chunks, queries, folder=None, hear="target"):
    """Feed the chunks; ``queries[i]`` is the text in the query box when chunk ``i`` is sent.

    Returns what was played per reply, the status lines, and the wav files written at the stop."""
    session, played, statuses = None, [], []
    for i, chunk in enumerate(chunks):
        session, payload, status = live_step(session, separator, chunk, queries[i], None, "", "250 ms", hear)
        played.append(decode(payload))
        statuses.append(status)
    session, payload, status, target_path, residual_path = live_stop(session, folder, hear)
    played.append(decode(payload))
    statuses.append(status)
    return played, statuses, target_path, residual_path


def mono(samples: np.ndarray) -> np.ndarray:
    return (samples.astype(np.float32) / 32768.0).mean(axis=1)


def test_a_file_streamed_through_the_live_page(separator, microphone, tmp_path):
    samples, chunks = microphone
    # The session's stream, kept to read its latency before stop() replaces it.
    session = LiveSession(separator)
    live_step(session, separator, chunks[0], "dog barking")
    latency_samples = session.stream.latency_samples
    assert 0.25 <= session.stream.latency <= 0.45  # 240 ms + the 48 kHz resampler's hold-back

    targets, statuses, target_path, residual_path = run(separator, chunks, ["dog barking"] * len(chunks), tmp_path)
    received = emitted = 0
    for chunk, target in zip(chunks, targets):
        received += chunk[1].shape[0]
        emitted += len(target)
        # Every reply plays exactly what the fixed latency allows so far.
        assert emitted == max(0, received - latency_samples)
    target = np.concatenate(targets)
    assert target.shape == (samples.shape[0],)  # the tail came with the stop
    # The files of the whole recording: what was played, and the residual.
    np.testing.assert_array_equal(read(target_path), target)
    residual = read(residual_path)
    # target + residual is the mono input, sample for sample (16-bit wav: two roundings of 1/32768)
    np.testing.assert_allclose(target + residual, mono(samples), atol=2.5 / 32768)
    # ... and target is what the Python stream API gives for the same blocks
    stream = separator.stream(text="dog barking", sample_rate=RATE, latency=0.25)
    expected = [stream.push(mono(chunk[1]))[0] for chunk in chunks] + [stream.finish()[0]]
    np.testing.assert_allclose(target, np.concatenate(expected), atol=1.5 / 32768)
    assert np.abs(target - mono(samples)).max() > 0.01  # it did separate something
    assert f"{len(chunks)} blocks, 3.0 s in" in statuses[-2] and "keeping **dog barking**" in statuses[-2]
    assert statuses[-1].startswith("Stopped.") and "3.0 s out" in statuses[-1]


def test_a_query_change_while_running_takes_effect(separator, microphone):
    _, chunks = microphone
    switch = len(chunks) // 2
    queries = ["dog barking"] * switch + ["violin"] * (len(chunks) - switch)
    targets, statuses, _, _ = run(separator, chunks, queries)
    changed_at = sum(chunk[1].shape[0] for chunk in chunks[:switch]) / RATE
    assert f"query changed to **violin** at {changed_at:.1f} s" in statuses[switch]
    assert "keeping **violin**" in statuses[switch]

    # The same change through the Python API, and a run that never changes.
    stream = separator.stream(text="dog barking", sample_rate=RATE, latency=0.25)
    expected = []
    for i, chunk in enumerate(chunks):
        if i == switch:
            stream.set_query(text="violin")
        expected.append(stream.push(mono(chunk[1]))[0])
    expected.append(stream.finish()[0])
    target, expected = np.concatenate(targets), np.concatenate(expected)
    np.testing.assert_allclose(target, expected, atol=1.5 / 32768)


class BandSeparator:
    """The conftest's band network behind the ``stream`` call the page makes: text "low" keeps 200 Hz, "high" 5 kHz."""

    def __init__(self, band):
        self.band = band

    def _embed(self, query, fields):
        from types import SimpleNamespace

        from omnisep.queries import QueryRows

        text = fields["text"]
        vector = self.band.bank.embeddings[self.band.bank.labels.index(text)]
        return SimpleNamespace(vector=vector, label=text, rows=lambda: QueryRows(vector[None]))

    def stream(self, sample_rate, channels, latency, **fields):
        from omnisep.live import LiveStream

        query = self._embed(None, fields)
        return LiveStream(self.band.model, query.vector, sample_rate, channels, latency, label=query.label, embed=self._embed)


def test_the_new_query_is_heard_after_one_latency(band_separator):
    """A 200 Hz + 5 kHz 'microphone'; the query box goes from "low" to "high" at 2 s."""
    low, high = band_separator.tones(seconds=4.0, rate=RATE)
    samples = np.round((low + high)[:, None] * 32767).astype(np.int16)
    chunks = [(RATE, samples[i : i + RATE // 4]) for i in range(0, samples.shape[0], RATE // 4)]
    queries = ["low"] * 8 + ["high"] * 8
    targets, statuses, _, _ = run(BandSeparator(band_separator), chunks, queries, hear="residual")
    residual = np.concatenate(targets)
    target = (low + high) - residual  # played the residual this time; within 16-bit rounding of the target
    assert target.shape == (samples.shape[0],)
    assert "query changed to **high** at 2.0 s" in statuses[8]

    def share_of_high(part):  # the 5 kHz tone's share of the target's energy
        spectrum = np.abs(np.fft.rfft(part * np.hanning(part.size))) ** 2
        freqs = np.fft.rfftfreq(part.size, 1 / RATE)
        return spectrum[freqs > 2500].sum() / spectrum.sum()

    # Output second s is input second s (the delay is taken out by the index), so the change
    # shows from 2 s on, give or take one latency (0.24 s + resampling) and one hop.
    before, after = target[int(0.5 * RATE) : int(1.5 * RATE)], target[int(2.6 * RATE) : int(3.6 * RATE)]
    assert share_of_high(before) < 0.2
    assert share_of_high(after) > 0.8


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        ((RATE, np.full(4800, np.nan, np.float32)), "NaN or infinite"),
        ((RATE, np.zeros((4, 4, 4), np.int16)), "shape (4, 4, 4)"),
        ((RATE, np.array(["a", "b"])), "must be samples"),
        ((0, np.zeros(4800, np.int16)), "unusable sample rate"),
        ("noise", "must be (sample rate, samples)"),
    ],
)
def test_bad_chunks_are_one_sentence_on_the_status_line(separator, microphone, chunk, message):
    _, chunks = microphone
    session, *_ = live_step(None, separator, chunks[0], "dog barking")
    session, payload, status = live_step(session, separator, chunk, "dog barking")
    assert status.startswith("Error: ") and message in status and "Traceback" not in status
    assert payload is None
    # The stream goes on with the next good chunk.
    _, _, status = live_step(session, separator, chunks[1], "dog barking")
    assert "2 blocks" in status


def test_no_query_rate_change_and_latency_change(separator, microphone):
    _, chunks = microphone
    session, payload, status = live_step(None, separator, chunks[0], "  ")
    assert (payload, status) == (None, NO_QUERY) and session.stream is None
    session, _, status = live_step(session, separator, None, "dog")
    assert status == "Waiting for the microphone."
    session, _, status = live_step(session, separator, chunks[0], "dog barking", latency="500 ms")
    assert "latency" in status and session.stream.latency > 0.45
    _, _, status = live_step(session, separator, chunks[1], "dog barking", latency="100 ms")
    assert "The latency 100 ms applies from the next recording" in status
    _, _, status = live_step(session, separator, chunks[2], "", latency="500 ms")
    assert "the last query stays" in status and "keeping **dog barking**" in status
    _, _, status = live_step(session, separator, (44100, chunks[3][1]), "dog barking", latency="500 ms")
    assert status == ("Error: the microphone's sample rate changed from 48000 Hz to 44100 Hz; "
                      "stop and start the recording again.")
    _, _, status = live_step(session, separator, chunks[3], "dog barking", latency="2 s")
    assert "unknown latency '2 s'" in status
    session, payload, status, target_path, residual_path = live_stop(session, None, "nothing")
    assert status.startswith("Stopped.") and payload is None and session.stream is None
    assert (target_path, residual_path) == (None, None)  # no folder given
    assert live_stop(None)[2] == "Stopped."
