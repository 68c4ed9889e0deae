"""The demo's live page without the web framework: microphone blocks in, separated blocks out.

Gradio streams the microphone as short ``(rate, int16 samples)`` chunks
and plays back whatever the handler returns for a streaming audio output.
:class:`LiveSession` is one browser tab's state (kept in ``gr.State``,
never shared between users): it opens an :class:`omnisep.live.LiveStream`
at the microphone's rate on the first chunk (mixed down to mono: one
network run per hop whatever the microphone's channel count), changes the
query when the query box changes (:meth:`LiveStream.set_query`, from the
next hop on), and turns every problem a user can cause into a sentence on
the status line. :func:`live_step` and :func:`live_stop` are what the page
calls, so tests drive them without a browser.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from omnisep.errors import OmniSepError

log = logging.getLogger(__name__)

#: the latency choices the page offers (label -> seconds); all run in real time on one core (docs/live.md)
LATENCIES = {"100 ms": 0.1, "250 ms": 0.25, "500 ms": 0.5, "1 s": 1.0}
DEFAULT_LATENCY_LABEL = "250 ms"
#: how often the browser sends a microphone chunk (Gradio's ``stream_every``)
STREAM_EVERY = 0.25
#: a session stops itself after this long (a forgotten tab must not hold a CPU core forever)
MAX_SECONDS = 15 * 60
NO_QUERY = "Type what to keep (or pick an image) to start separating."


@dataclass
class LiveUpdate:
    """What the page shows after one chunk: audio as 16-bit wav bytes (``None``: nothing new) and the status line."""

    target: bytes | None
    residual: bytes | None
    status: str


@dataclass
class LiveSession:
    """One tab's live separation: created on the first chunk, closed by :meth:`stop`."""

    separator: object
    stream: object | None = None
    rate: int = 0
    latency: float = 0.0
    query_key: tuple = ()
    blocks: int = 0  # chunks separated
    received: int = 0  # input samples (at ``rate``)
    emitted: int = 0  # output samples handed back
    compute: float = 0.0  # seconds spent separating
    late: int = 0  # chunks whose separation took longer than the audio they carried
    query_changes: list[tuple[float, str]] = field(default_factory=list)  # (input second, new label)
    started: float | None = None  # wall clock of the first chunk
    note: str = ""

    # -- the page's two calls -------------------------------------------------------------------

    def push(self, chunk, text: str = "", image: str | None = None, negative_text: str = "",
             latency: str | float = DEFAULT_LATENCY_LABEL) -> LiveUpdate:
        """One microphone chunk ``(rate, samples)`` -> the separated audio that became final, and the status."""
        rate, samples = _read_chunk(chunk)
        seconds = _seconds(latency)
        fields = _query_fields(text, image, negative_text)
        if self.stream is not None and rate != self.rate:
            raise OmniSepError(
                f"the microphone's sample rate changed from {self.rate} Hz to {rate} Hz; stop and start the recording again."
            )
        if not fields and self.stream is None:  # nothing to keep yet
            return LiveUpdate(None, None, NO_QUERY)
        started = time.perf_counter()
        notes = []
        if self.stream is None:
            self._open(rate, seconds, fields)
        elif not fields:  # the box was cleared while running: the stream must go on, with the last query
            notes.append("The query box is empty: the last query stays.")
        elif _key(fields) != self.query_key:
            self.stream.set_query(**fields)
            self.query_key = _key(fields)
            self.query_changes.append((self.received / self.rate, self.stream.label))
        if seconds != self.latency:
            notes.append(f"The latency {_ms(seconds)} applies from the next recording (stop, then record again).")
        self.note = " ".join(notes)
        target, residual = self.stream.push(samples)
        elapsed = time.perf_counter() - started
        self.compute += elapsed
        self.blocks += 1
        self.received += samples.shape[-1]
        self.emitted += target.shape[-1]
        if elapsed > samples.shape[-1] / rate:
            self.late += 1
        return LiveUpdate(_wav(target, rate), _wav(residual, rate), self.status())

    def stop(self) -> LiveUpdate:
        """Flush the tail (the last ``latency`` seconds) and close the stream; the next chunk opens a new one."""
        if self.stream is None:
            return LiveUpdate(None, None, "Stopped.")
        target, residual = self.stream.finish()
        self.emitted += target.shape[-1]
        status = "Stopped. " + self.status()
        rate = self.rate
        self.__init__(self.separator)  # a fresh session for the next recording
        return LiveUpdate(_wav(target, rate), _wav(residual, rate), status)

    # -- helpers ----------------------------------------------------------------------------

    def _open(self, rate: int, seconds: float, fields: dict) -> None:
        self.stream = self.separator.stream(sample_rate=rate, channels=1, latency=seconds, **fields)
        self.rate, self.latency, self.query_key = rate, seconds, _key(fields)
        self.started = time.monotonic()
        self.query_changes = [(0.0, self.stream.label)]

    def status(self) -> str:
        """One line: query, latency, what went through, and whether the server keeps up."""
        if self.stream is None:
            return NO_QUERY
        heard = self.received / self.rate
        line = (
            f"Live: keeping **{self.stream.label}** · latency {_ms(self.stream.latency)} "
            f"(plus the browser's {_ms(STREAM_EVERY)} chunks) · {self.blocks} blocks, {heard:.1f} s in, "
            f"{self.emitted / self.rate:.1f} s out · compute {self.compute / max(heard, 1e-9):.2f} s per second of audio"
        )
        behind = (time.monotonic() - self.started) - heard if self.started is not None else 0.0
        line += f" · late blocks: {self.late}"
        if behind > 2 * STREAM_EVERY + 1.0:
            line += f" · {behind:.1f} s of microphone time missing (dropped or delayed chunks)"
        if len(self.query_changes) > 1:
            second, label = self.query_changes[-1]
            line += f" · query changed to **{label}** at {second:.1f} s"
        if heard > MAX_SECONDS:
            line += f" · over {MAX_SECONDS // 60} min: stop and start again"
        return line + (f" · {self.note}" if self.note else "")


def live_step(session: LiveSession | None, separator, chunk, text="", image=None, negative_text="",
              latency=DEFAULT_LATENCY_LABEL) -> tuple[LiveSession, bytes | None, bytes | None, str]:
    """The page's handler for one chunk: never raises for a user's problem, it goes to the status line."""
    session = session if session is not None else LiveSession(separator)
    if chunk is None:
        return session, None, None, session.status() if session.stream is not None else "Waiting for the microphone."
    try:
        update = session.push(chunk, text, image, negative_text, latency)
    except OmniSepError as exc:
        return session, None, None, f"Error: {exc}"
    except Exception:
        log.exception("live separation failed")
        return session, None, None, "Error: live separation failed unexpectedly; the terminal running `omnisep demo` shows why."
    return session, update.target, update.residual, update.status


def live_stop(session: LiveSession | None) -> tuple[LiveSession | None, bytes | None, bytes | None, str]:
    """The page's handler for "stop recording": the tail of the separation, and a fresh session."""
    if session is None:
        return None, None, None, "Stopped."
    try:
        update = session.stop()
    except OmniSepError as exc:
        return session, None, None, f"Error: {exc}"
    return session, update.target, update.residual, update.status


def _read_chunk(chunk) -> tuple[int, np.ndarray]:
    """Gradio's ``(rate, int16 [n] or [n, channels])`` -> (rate, float32 mono [n])."""
    if not (isinstance(chunk, (tuple, list)) and len(chunk) == 2):
        raise OmniSepError(f"a microphone chunk must be (sample rate, samples), got {type(chunk).__name__}.")
    rate, data = chunk
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 4000 <= rate <= 384000:
        raise OmniSepError(f"the microphone chunk has an unusable sample rate ({rate!r}).")
    try:
        data = np.asarray(data)
    except (TypeError, ValueError):
        raise OmniSepError("the microphone chunk does not hold samples.") from None
    if data.ndim not in (1, 2) or data.dtype.kind not in "iuf":
        raise OmniSepError(f"the microphone chunk must be samples [n] or [n, channels], got an array of shape {data.shape} ({data.dtype}).")
    if data.dtype.kind in "iu":
        scale = float(np.iinfo(data.dtype).max) + 1.0
        data = data.astype(np.float32) / scale
    else:
        data = data.astype(np.float32)
        if not np.isfinite(data).all():
            raise OmniSepError("the microphone chunk contains NaN or infinite samples.")
    if data.ndim == 2:
        data = data.mean(axis=1)
    return int(rate), data


def _query_fields(text, image, negative_text) -> dict:
    text, negative_text = (text or "").strip(), (negative_text or "").strip()
    if not text and not image:
        return {}
    fields = {"text": text or None, "image": image or None}
    if negative_text:
        fields["negative_text"] = negative_text
    return fields


def _key(fields: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in fields.items()))


def _seconds(latency) -> float:
    if isinstance(latency, str):
        if latency not in LATENCIES:
            raise OmniSepError(f"unknown latency {latency!r}; choose one of {', '.join(LATENCIES)}.")
        return LATENCIES[latency]
    return float(latency)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _wav(samples: np.ndarray, rate: int) -> bytes | None:
    """Float samples -> 16-bit wav bytes (Gradio streams bytes as they are; arrays it would peak-normalise per chunk)."""
    if samples.shape[-1] == 0:
        return None
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
