"""The demo's live page without the web framework: microphone blocks in, separated blocks out.

Gradio streams the microphone as short ``(rate, int16 samples)`` chunks
(about 100 ms each). Its streaming audio *output* only works for generator
handlers, one stream per call, so the page plays the separated blocks
itself: each reply carries the new samples (16-bit PCM, base64, in a hidden
text box) and a few lines of JavaScript schedule them gaplessly with the
Web Audio API. :class:`LiveSession` is one browser tab's state (kept in ``gr.State``,
never shared between users): it opens an :class:`omnisep.live.LiveStream`
at the microphone's rate on the first chunk (mixed down to mono: one
network run per hop whatever the microphone's channel count), changes the
query when the query box changes (:meth:`LiveStream.set_query`, from the
next hop on), and turns every problem a user can cause into a sentence on
the status line. It also keeps the whole separated target and residual,
written to wav files when the recording stops. :func:`live_step` and
:func:`live_stop` are what the page calls, so tests drive them without a
browser.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from omnisep import fileio
from omnisep.audio import float_samples
from omnisep.errors import OmniSepError

log = logging.getLogger(__name__)

#: the latency choices the page offers (label -> seconds); 100 ms needs an idle core, the others kept up on a busy one (docs/live.md)
LATENCIES = {"100 ms": 0.1, "250 ms": 0.25, "500 ms": 0.5, "1 s": 1.0}
DEFAULT_LATENCY_LABEL = "250 ms"
#: how often the browser is asked to send a microphone chunk (Gradio's ``stream_every``; its audio recorder uses 0.1 s whatever is asked)
STREAM_EVERY = 0.1
#: a recording stops after this long (a forgotten tab must not hold a CPU core forever, nor the memory of what it kept)
MAX_SECONDS = 10 * 60
HEAR = ("target", "residual", "nothing")
NO_QUERY = "Type what to keep (or pick an image) to start separating."


@dataclass
class LiveUpdate:
    """What became final after one chunk (mono float samples at the microphone's rate) and the status line."""

    target: np.ndarray
    residual: np.ndarray
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
    level: str = ""
    kept: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # int16 (target, residual) blocks
    # a chunk still in flight when Stop is pressed must not run into the stop's reset
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

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
            return LiveUpdate(_EMPTY, _EMPTY, NO_QUERY)
        if self.received / rate >= MAX_SECONDS:
            raise OmniSepError(f"a live recording lasts at most {MAX_SECONDS // 60} minutes; stop and start again.")
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
        self.level = f"level in {_dbfs(samples)}, target {_dbfs(target)}, residual {_dbfs(residual)}"
        if target.shape[-1]:
            self.kept.append((_int16(target), _int16(residual)))
        return LiveUpdate(target, residual, self.status())

    def stop(self, folder: Path | None = None) -> tuple[LiveUpdate, Path | None, Path | None]:
        """Flush the tail (the last ``latency`` seconds), close the stream, and write what was kept to ``folder``.

        Returns the tail, and the target and residual wav files (``None``
        without a folder or a stream). The next chunk opens a new stream.
        """
        if self.stream is None:
            return LiveUpdate(_EMPTY, _EMPTY, "Stopped."), None, None
        target, residual = self.stream.finish()
        self.emitted += target.shape[-1]
        if target.shape[-1]:
            self.kept.append((_int16(target), _int16(residual)))
        status = "Stopped. " + self.status()
        paths = (None, None)
        if folder is not None and self.kept:
            folder.mkdir(parents=True, exist_ok=True)
            paths = tuple(
                _write(folder / f"live_{name}.wav", np.concatenate([block[i] for block in self.kept]), self.rate)
                for i, name in enumerate(("target", "residual"))
            )
        self.__init__(self.separator)  # a fresh session for the next recording
        return LiveUpdate(target, residual, status), *paths

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
            f"(plus the browser's {_ms(heard / max(self.blocks, 1))} chunks) · {self.blocks} blocks, {heard:.1f} s in, "
            f"{self.emitted / self.rate:.1f} s out · compute {self.compute / max(heard, 1e-9):.2f} s per second of audio"
        )
        behind = (time.monotonic() - self.started) - heard if self.started is not None else 0.0
        line += f" · late blocks: {self.late}"
        if self.blocks >= 8 and self.late > self.blocks // 4:
            line += " (this computer does not keep up at this latency: choose a longer one)"
        if behind > 2 * STREAM_EVERY + 1.0:
            line += f" · {behind:.1f} s of microphone time missing (dropped or delayed chunks)"
        if self.level:
            line += f" · {self.level}"
        if len(self.query_changes) > 1:
            second, label = self.query_changes[-1]
            line += f" · query changed to **{label}** at {second:.1f} s"
        return line + (f" · {self.note}" if self.note else "")


def live_step(session: LiveSession | None, separator, chunk, text="", image=None, negative_text="",
              latency=DEFAULT_LATENCY_LABEL, hear: str = "target") -> tuple[LiveSession, str | None, str]:
    """The page's handler for one chunk -> (session, playback payload or ``None``, status line).

    Never raises for a user's problem: it goes to the status line.
    """
    session = session if session is not None else LiveSession(separator)
    if chunk is None:
        return session, None, session.status() if session.stream is not None else "Waiting for the microphone."
    try:
        with session.lock:
            update = session.push(chunk, text, image, negative_text, latency)
    except OmniSepError as exc:
        return session, None, f"Error: {exc}"
    except Exception:
        log.exception("live separation failed")
        return session, None, "Error: live separation failed unexpectedly; the terminal running `omnisep demo` shows why."
    return session, playback(update, session.rate or chunk[0], hear, session.blocks, session.received), update.status


def live_stop(session: LiveSession | None, folder: Path | None = None, hear: str = "target"):
    """The page's handler for "stop recording" -> (fresh session, playback of the tail, status, target wav, residual wav)."""
    if session is None:
        return None, None, "Stopped.", None, None
    rate, blocks, received = session.rate, session.blocks + 1, session.received
    try:
        with session.lock:
            update, target_path, residual_path = session.stop(folder)
    except OmniSepError as exc:
        return session, None, f"Error: {exc}", None, None
    return session, playback(update, rate, hear, blocks, received), update.status, target_path, residual_path


def playback(update: LiveUpdate, rate: int, hear: str, sequence: int, received: int) -> str | None:
    """The samples the page plays: JSON with the rate, the input samples received so far and base64 16-bit PCM.

    ``None``: nothing to play.
    """
    if hear not in HEAR:
        hear = "target"
    samples = {"target": update.target, "residual": update.residual}.get(hear)
    if samples is None or not samples.shape[-1]:
        return None
    pcm = base64.b64encode(_int16(samples).astype("<i2").tobytes()).decode("ascii")
    return json.dumps({"rate": int(rate), "sequence": int(sequence), "received": int(received), "pcm": pcm})


def decode_playback(payload: str) -> tuple[int, np.ndarray]:
    """The inverse of :func:`playback` (for tests): (rate, float32 samples)."""
    data = json.loads(payload)
    pcm = np.frombuffer(base64.b64decode(data["pcm"]), dtype="<i2")
    return data["rate"], pcm.astype(np.float32) / 32768.0


#: What the player keeps on ``window.omnisepLive``: the audio context, where the next block starts, counts, and per
#: block when its first sample plays and which input sample that is. The end-to-end delay of sample k is its play
#: time minus its capture time c0 + k / rate. The capture start c0 is not known in the page; every reply bounds it:
#: input sample ``received`` was captured before the reply came, so c0 <= arrival - received / rate. With the
#: tightest such bound the delay shown is a lower bound, short of the true delay by the fastest round trip of a
#: chunk (upload, queue, separation, reply); ``t0`` (the Record click) gives an upper bound (it counts the
#: microphone's start-up as delay).
_PLAYER_STATE = (
    "(window.omnisepLive ??= {ctx: null, next: 0, samples: 0, blocks: 0, underruns: 0, dropped: 0, sum2: 0, t0: 0, "
    "c0: Infinity, plays: []})"
)

#: seconds of audio the player may have queued; a block that comes when more is queued (replies came in a burst
#: after a stall) is dropped, so stalls do not add to the delay for the rest of the recording
MAX_QUEUED = 0.25

#: plays the payloads gaplessly (Web Audio): each block starts where the last one ends, or now + 50 ms after a gap
PLAYER_JS = """
(payload) => {
  const w = STATE;
  if (!payload) return;
  const data = JSON.parse(payload);
  w.ctx ??= new AudioContext();
  if (w.ctx.state === "suspended") w.ctx.resume();
  const bytes = Uint8Array.from(atob(data.pcm), (c) => c.charCodeAt(0));
  const pcm = new Int16Array(bytes.buffer);
  const buffer = w.ctx.createBuffer(1, pcm.length, data.rate);
  const channel = buffer.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) { channel[i] = pcm[i] / 32768; w.sum2 += channel[i] * channel[i]; }
  const source = w.ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(w.ctx.destination);
  const now = w.ctx.currentTime;
  const wall = performance.now() / 1000;
  w.c0 = Math.min(w.c0, wall - data.received / data.rate);
  w.samples += pcm.length;
  if (w.next - now > QUEUED) { w.dropped += 1; return; }
  if (w.next < now) { if (w.blocks) w.underruns += 1; w.next = now + 0.05; }
  source.start(w.next);
  w.plays.push([wall + (w.next - now), (w.samples - pcm.length) / data.rate]);
  w.next += buffer.duration;
  w.blocks += 1;
  const median = (values) => values.sort((a, b) => a - b)[values.length >> 1];
  const recent = w.plays.slice(-20);
  w.delay = median(recent.map(([plays, k]) => plays - w.c0 - k));
  w.delayFromClick = median(recent.map(([plays, k]) => plays - w.t0 - k));
  const shown = document.getElementById("live-player");
  if (shown) shown.textContent = `Playback: ${(w.samples / data.rate).toFixed(1)} s received, ${w.blocks} blocks played, ` +
    `${w.underruns} underruns (playback ran dry and waited), ${w.dropped} blocks dropped (late, in a burst) · ` +
    `microphone to loudspeaker: at least ` +
    `${Math.round(w.delay * 1000)} ms, at most ${Math.round(w.delayFromClick * 1000)} ms (median of the last 20 blocks)`;
}
""".replace("STATE", _PLAYER_STATE).replace("QUEUED", str(MAX_QUEUED))

#: on Record: browsers start audio only after a user gesture, so the player's context is made (or resumed) here
START_JS = """
() => {
  const w = STATE;
  w.ctx ??= new AudioContext();
  if (w.ctx.state === "suspended") w.ctx.resume();
  Object.assign(w, {next: 0, samples: 0, blocks: 0, underruns: 0, dropped: 0, sum2: 0, t0: performance.now() / 1000,
                   c0: Infinity, plays: []});
}
""".replace("STATE", _PLAYER_STATE)


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
    data = float_samples(data, "the microphone chunk")  # integers scaled by their type's range, as everywhere
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


_EMPTY = np.zeros(0, np.float32)


def _int16(samples: np.ndarray) -> np.ndarray:
    return np.round(np.clip(samples, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def _dbfs(samples: np.ndarray) -> str:
    if not samples.shape[-1]:
        return "-"
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return f"{20 * np.log10(max(rms, 1e-6)):.0f} dBFS"


def _write(path: Path, samples: np.ndarray, rate: int) -> Path:
    """An int16 wav, written atomically (never a half-written file)."""
    with fileio.atomic_path(path) as temp:
        sf.write(temp, samples, rate, format="WAV", subtype="PCM_16")
    return path
