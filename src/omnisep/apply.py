"""Whole-file inference: chunked separation with overlap, many queries, streaming.

How a long signal is cut
------------------------
The U-Net is convolutional along time, so a file of any length could be
separated in one piece; memory, however, grows with the length. We cut the
STFT frame axis into *cores* of ``chunk_seconds`` and run each core with
``overlap`` seconds of real context on both sides, then keep the core plus
half the context and cross-fade neighbouring chunks over that half with
linear ramps that sum to one.

* Cores and context are whole multiples of ``2 ** depth`` frames, and chunks
  start on that grid: the stride-2 convolutions then see exactly the frames
  and the phase they see in one-piece processing. For a shift-equivariant
  U-Net (``align_corners=False`` up-sampling) chunked output equals the
  one-piece output to float precision once the context exceeds the effective
  receptive field (one level, 128 frames, is enough at depth 7). The paper's
  U-Net up-samples with ``align_corners=True``, whose sampling grid depends
  on the input width, so there no chunking can be exact; the cross-fade then
  hides the seams (see ``docs/performance.md``).
* Stitching happens on separated *waveforms*: each chunk's STFT frames are
  exactly the one-piece frames (the chunk's audio is cut with the STFT
  window's reach on both sides) and its iSTFT is kept only where every frame
  reaching a sample is present, so before the cross-fade the kept samples are
  the one-piece samples. iSTFT is linear, so fading waveforms is fading
  masked spectra, and finished samples can be written out at once, which the
  streaming path needs.
* Frames after the last real one are padded with silence (the 1e-10 floor),
  exactly as :func:`omnisep.models.signal_path.separate` does for one piece.

Each chunk goes through :func:`omnisep.models.signal_path.separate_spectrogram`
(the one signal path): the query-independent half of the network runs once
per chunk for all queries. Outputs are not clipped (see ``signal_path``).
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import soxr
import torch

from omnisep.models import signal_path
from omnisep.queries import QueryRows
from omnisep.spectral import HOP, N_FFT, SAMPLE_RATE

DEFAULT_CHUNK_SECONDS = 20.0
DEFAULT_OVERLAP_SECONDS = 2.0
DEFAULT_BATCH_SIZE = 1

FRAMES_PER_SECOND = SAMPLE_RATE / HOP
_REACH = N_FFT // 2  # samples an STFT frame reaches on each side of its centre


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def chunk_layout(model, chunk_seconds: float, overlap: float) -> tuple[int, int, int]:
    """(core frames, context frames, cross-fade half-width in frames) on the ``2 ** depth`` grid."""
    if not chunk_seconds > 0:
        raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
    if not overlap >= 0:
        raise ValueError(f"overlap must be >= 0 seconds, got {overlap}")
    multiple = model.time_multiple
    core = _round_up(max(1, round(chunk_seconds * FRAMES_PER_SECOND)), multiple)
    # At least the context the network declares (and one grid step: the iSTFT
    # of a kept sample needs two frames on either side, and the cross-fade
    # needs room).
    minimum = _round_up(max(multiple, model.context_frames), multiple)
    context = max(minimum, _round_up(round(overlap * FRAMES_PER_SECOND), multiple))
    # A chunk's fade-in must end before its fade-out starts, or three chunks
    # overlap and the ramps no longer sum to one: context longer than the core
    # is still used as context, but the cross-fade is at most half a core.
    return core, context, min(context // 2, core // 2)


class BlockEngine:
    """What the 16 kHz engines share (:class:`ChunkedSeparator`, :class:`omnisep.live.BlockOnlineSeparator`):
    blocks ``[S, n]`` in, checked the same way, into a buffer, until an end that comes once.

    A subclass sets ``signals``, ``received = 0``, ``total = None``, ``_buffer`` (``[S, 0]``) and
    ``_buffer_start`` in its ``__init__``.
    """

    signals: int
    received: int  # input samples so far
    total: int | None  # input samples in all, once finish() has been called
    _buffer: np.ndarray  # input from _buffer_start on

    def _accept(self, block: np.ndarray) -> None:
        """Check a pushed block (an open stream, ``[S, n]``), append it to the buffer as float32 and count it."""
        if self.total is not None:
            raise RuntimeError("push() after finish()")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.signals:
            raise ValueError(f"expected a block [{self.signals}, n], got shape {block.shape}")
        self._buffer = np.concatenate([self._buffer, block], axis=1)
        self.received += block.shape[1]

    def _close(self) -> int:
        """Mark the end of the input (once); returns the number of input samples."""
        if self.total is not None:
            raise RuntimeError("finish() called twice")
        self.total = self.received
        return self.total


class ChunkedSeparator(BlockEngine):
    """The 16 kHz engine: audio ``[S, n]`` in (any block sizes), separated ``[Q, S, m]`` out.

    Output samples come out in order as soon as no later chunk can change
    them; the concatenation of all outputs is ``[Q, S, T]`` for ``T`` input
    samples, and does not depend on how the input was split into blocks.
    Memory is bounded by the chunk size, not by the input length.
    """

    def __init__(
        self,
        model,
        queries,
        signals: int = 1,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        overlap: float = DEFAULT_OVERLAP_SECONDS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        binary: bool | None = None,
    ):
        """``queries``: ``[Q, D]`` vectors, or :class:`omnisep.queries.QueryRows` (logit-space negatives)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.device = next(model.parameters()).device
        self.queries = QueryRows.of(queries).to(self.device)
        self.signals = int(signals)
        self.batch_size = int(batch_size)
        self.binary = binary  # None: the model's own mask type
        self.core, self.context, self.fade = chunk_layout(model, chunk_seconds, overlap)
        self.received = 0  # input samples so far
        self._buffer = np.zeros((self.signals, 0), np.float32)
        self._buffer_start = 0  # global index of the buffer's first sample
        self._next_chunk = 0
        self._emitted = 0  # output samples final so far
        self._pending = np.zeros((len(self.queries), self.signals, 0), np.float32)  # from _emitted on
        self._finished: list[np.ndarray] = []  # final, not yet handed out
        self.total: int | None = None

    # -- geometry (frames are global STFT frame indices) ---------------------------------------

    def _window(self, chunk: int, n_frames: int | None) -> tuple[int, int]:
        """Frames [first, stop) fed to the U-Net for a chunk (stop clipped to the real frames)."""
        first = max(0, chunk * self.core - self.context)
        stop = (chunk + 1) * self.core + self.context
        return first, stop if n_frames is None else min(stop, n_frames)

    def _is_last(self, chunk: int, n_frames: int | None) -> bool:
        return n_frames is not None and (chunk + 1) * self.core >= n_frames

    # -- feeding -------------------------------------------------------------------------------

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add input samples ``[S, n]``; returns the output samples finished so far."""
        self._accept(block)
        ready = []
        while True:
            _, stop = self._window(self._next_chunk + len(ready), None)
            # Enough audio for the window's last frame; then the file is known
            # to go on beyond the window, so this chunk is not the last one.
            if self.received < (stop - 1) * HOP + _REACH + HOP:
                break
            ready.append(self._next_chunk + len(ready))
            if len(ready) == self.batch_size:
                self._run(ready, None)
                ready = []
        # Chunks that could not fill a batch wait for more input (run again later).
        return self._hand_out()

    def finish(self) -> np.ndarray:
        """Flush: separates the remaining chunks and returns the last output samples."""
        self._close()
        n_frames = self.total // HOP + 1
        chunks = list(range(self._next_chunk, math.ceil(n_frames / self.core))) if self.total else []
        for start in range(0, len(chunks), self.batch_size):
            self._run(chunks[start : start + self.batch_size], n_frames)
        self._collect(self.total)
        return self._hand_out()

    # -- separation ----------------------------------------------------------------------------

    def _segment(self, first: int, stop: int) -> np.ndarray:
        """Samples reaching frames [first, stop), zeros outside the signal (centred zero-padded STFT)."""
        lo, hi = first * HOP - _REACH, (stop - 1) * HOP + _REACH
        out = np.zeros((self.signals, hi - lo), np.float32)
        src_lo = max(lo, self._buffer_start)
        src_hi = min(hi, self._buffer_start + self._buffer.shape[1])
        if src_hi > src_lo:
            out[:, src_lo - lo : src_hi - lo] = self._buffer[:, src_lo - self._buffer_start : src_hi - self._buffer_start]
        return out

    def _run(self, chunks: list[int], n_frames: int | None) -> None:
        """Separate chunks, grouping those whose windows have equal widths into one U-Net batch."""
        groups: list[list[int]] = []
        for chunk in chunks:
            first, stop = self._window(chunk, n_frames)
            if groups and self._width(groups[-1][0], n_frames) == stop - first:
                groups[-1].append(chunk)
            else:
                groups.append([chunk])
        for group in groups:
            self._separate_group(group, n_frames)
        self._next_chunk = chunks[-1] + 1
        # Samples before the next chunk's fade-in are final.
        self._collect(max(0, self._next_chunk * self.core - self.fade) * HOP)
        # Keep only the audio the next chunk's window reaches.
        first, _ = self._window(self._next_chunk, None)
        keep_from = max(self._buffer_start, first * HOP - _REACH)
        self._buffer = self._buffer[:, keep_from - self._buffer_start :]
        self._buffer_start = keep_from

    def _width(self, chunk: int, n_frames: int | None) -> int:
        first, stop = self._window(chunk, n_frames)
        return stop - first

    def _separate_group(self, group: list[int], n_frames: int | None) -> None:
        first0, stop0 = self._window(group[0], n_frames)
        width = stop0 - first0
        segments = np.stack([self._segment(*self._window(chunk, n_frames)) for chunk in group])
        wave = torch.from_numpy(segments.reshape(len(group) * self.signals, -1)).to(self.device)
        with torch.inference_mode():
            # Frames 2 .. 2 + width are the ones whose window lies inside the segment.
            spec = signal_path.analyse(wave)[..., 2 : 2 + width]
            rows = self.queries.rows.unsqueeze(0).expand(spec.shape[0], -1, -1)
            out = signal_path.separate_spectrogram(self.model, spec, rows, width * HOP, self.binary, self.queries.combine,
                                                   self.queries.second_look)
        estimate = out.reshape(len(group), self.signals, len(self.queries), -1).cpu().numpy()
        estimate = estimate.transpose(0, 2, 1, 3)  # [G, Q, S, samples]
        for index, chunk in enumerate(group):
            self._add(chunk, estimate[index], n_frames)

    def _add(self, chunk: int, estimate: np.ndarray, n_frames: int | None) -> None:
        """Fade one chunk's output into the pending output.

        Ramps are functions of the global sample index, so the fade-out of
        one chunk and the fade-in of the next sum to one even where the end
        of the signal cuts them.
        """
        first, _ = self._window(chunk, n_frames)
        core_lo, core_hi = chunk * self.core, (chunk + 1) * self.core
        last = self._is_last(chunk, n_frames)
        lo = max(0, core_lo - self.fade) * HOP
        hi = self.total if last else (core_hi + self.fade) * HOP
        if self.total is not None:
            hi = min(hi, self.total)
        piece = estimate[..., lo - first * HOP : hi - first * HOP].copy()
        index = np.arange(lo, hi, dtype=np.float64) + 0.5
        ramp_length = 2 * self.fade * HOP
        weight = np.ones(hi - lo)
        if chunk > 0:
            weight *= np.clip((index - (core_lo - self.fade) * HOP) / ramp_length, 0.0, 1.0)
        if not last:
            weight *= np.clip(((core_hi + self.fade) * HOP - index) / ramp_length, 0.0, 1.0)
        piece *= weight.astype(np.float32)
        end = hi - self._emitted
        if end > self._pending.shape[-1]:
            grown = np.zeros(self._pending.shape[:-1] + (end,), np.float32)
            grown[..., : self._pending.shape[-1]] = self._pending
            self._pending = grown
        self._pending[..., lo - self._emitted : end] += piece

    def _collect(self, upto: int) -> None:
        """Move output samples before ``upto`` (no later chunk touches them) to the finished list."""
        count = max(0, upto - self._emitted)
        if count:
            self._finished.append(self._pending[..., :count])
            self._pending = self._pending[..., count:]
            self._emitted += count

    def _hand_out(self) -> np.ndarray:
        if not self._finished:
            return np.zeros((len(self.queries), self.signals, 0), np.float32)
        out = np.concatenate(self._finished, axis=-1)
        self._finished = []
        return out


def separate_tensor(
    model,
    wave,
    queries: torch.Tensor,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    overlap: float = DEFAULT_OVERLAP_SECONDS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    binary: bool | None = None,
) -> torch.Tensor:
    """Separate 16 kHz audio ``[T]`` (or ``[S, T]``) for queries ``[Q, D]`` (or QueryRows) -> ``[Q, T]`` (or ``[Q, S, T]``).

    This is what ``omnisep separate`` computes at 16 kHz, and what evaluation scores.
    """
    wave = torch.as_tensor(wave, dtype=torch.float32)
    single = wave.dim() == 1
    signals = wave.reshape(1, -1) if single else wave
    with eval_mode(model):
        engine = ChunkedSeparator(model, queries, signals.shape[0], chunk_seconds, overlap, batch_size, binary)
        parts = [engine.push(signals.cpu().numpy()), engine.finish()]
    out = torch.from_numpy(np.concatenate(parts, axis=-1))
    return out[:, 0] if single else out


@contextlib.contextmanager
def eval_mode(model):
    """BatchNorm must use its running statistics, or chunks would see different normalisations."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# -- any rate, any channels ---------------------------------------------------------------------


class StreamSeparator:
    """Rate adapter around :class:`ChunkedSeparator`: audio ``[C, n]`` at ``sample_rate`` in, targets out.

    Channels are separated independently (one U-Net batch). Resampling uses
    soxr streams, whose output equals one-shot ``soxr.resample`` on the whole
    signal, so :func:`separate_array` and :func:`separate_stream` agree exactly.
    """

    def __init__(
        self,
        model,
        queries: torch.Tensor,
        sample_rate: int,
        channels: int,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        overlap: float = DEFAULT_OVERLAP_SECONDS,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ):
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.n_queries = len(queries)
        self.engine = ChunkedSeparator(model, queries, channels, chunk_seconds, overlap, batch_size)
        self.received = 0
        self.emitted = 0
        self._down = self._up = None
        if self.sample_rate != SAMPLE_RATE:
            self._down = soxr.ResampleStream(self.sample_rate, SAMPLE_RATE, channels, dtype="float32", quality="VHQ")
            self._up = soxr.ResampleStream(
                SAMPLE_RATE, self.sample_rate, self.n_queries * channels, dtype="float32", quality="VHQ"
            )

    def push(self, block: np.ndarray) -> np.ndarray:
        """Input ``[C, n]`` -> finished targets ``[Q, C, m]`` at the input rate."""
        self.received += block.shape[1]
        return self._emit(self.engine.push(self._to_16k(block, last=False)), last=False)

    def finish(self) -> np.ndarray:
        """The remaining targets; in all, exactly as many samples as were pushed."""
        tail = self.engine.push(self._to_16k(np.zeros((self.channels, 0), np.float32), last=True))
        out = np.concatenate([self._emit(tail, last=False), self._emit(self.engine.finish(), last=True)], axis=-1)
        # Resampling there and back can end a sample or two off: pad or trim to the input's length.
        wanted = self.received - (self.emitted - out.shape[-1])
        if out.shape[-1] > wanted:
            out = out[..., :wanted]
        elif out.shape[-1] < wanted:
            out = np.concatenate([out, np.zeros(out.shape[:-1] + (wanted - out.shape[-1],), np.float32)], axis=-1)
        self.emitted = self.received
        return out

    def _to_16k(self, block: np.ndarray, last: bool) -> np.ndarray:
        if self._down is None:
            return block
        return np.ascontiguousarray(self._down.resample_chunk(np.ascontiguousarray(block.T), last=last).T)

    def _emit(self, separated: np.ndarray, last: bool) -> np.ndarray:
        if self._up is not None:
            flat = separated.reshape(self.n_queries * self.channels, -1)
            flat = self._up.resample_chunk(np.ascontiguousarray(flat.T), last=last).T
            separated = np.ascontiguousarray(flat).reshape(self.n_queries, self.channels, -1)
        self.emitted += separated.shape[-1]
        return separated


def separate_array(
    model,
    audio: np.ndarray,
    sample_rate: int,
    queries: torch.Tensor,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    overlap: float = DEFAULT_OVERLAP_SECONDS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Targets ``[Q, C, T]`` for audio ``[C, T]`` at any rate (resampled to 16 kHz and back)."""
    audio = np.asarray(audio, dtype=np.float32)
    with eval_mode(model):
        stream = StreamSeparator(model, queries, sample_rate, audio.shape[0], chunk_seconds, overlap, batch_size)
        return np.concatenate([stream.push(audio), stream.finish()], axis=-1)


def separate_stream(
    model,
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    channels: int,
    queries: torch.Tensor,
    targets: Sequence,
    residuals: Sequence | None = None,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    overlap: float = DEFAULT_OVERLAP_SECONDS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_input: Callable[[int], None] | None = None,
) -> int:
    """Separate blocks ``[C, n]`` (e.g. an :class:`omnisep.audio.AudioReader`) straight into writers.

    ``targets[q]`` and ``residuals[q]`` have a ``write([C, n])`` method (e.g.
    :class:`omnisep.audio.AudioWriter`); residual = mixture - target, sample
    for sample. Only about one chunk of audio is held at a time, whatever the
    input length. ``on_input`` is called with each block's length (progress).
    Returns the number of input samples.
    """
    if len(targets) != len(queries) or (residuals is not None and len(residuals) != len(queries)):
        raise ValueError("one target (and residual) writer per query is needed")
    mixture: deque[np.ndarray] = deque()  # input not yet matched by output

    def write(separated: np.ndarray) -> None:
        count = separated.shape[-1]
        if count == 0:
            return
        taken = []
        while count:
            head = mixture[0]
            if head.shape[1] <= count:
                taken.append(mixture.popleft())
                count -= head.shape[1]
            else:
                taken.append(head[:, :count])
                mixture[0] = head[:, count:]
                count = 0
        mix = np.concatenate(taken, axis=1)
        for index, writer in enumerate(targets):
            writer.write(separated[index])
            if residuals is not None:
                residuals[index].write(mix - separated[index])

    with eval_mode(model):
        stream = StreamSeparator(model, queries, sample_rate, channels, chunk_seconds, overlap, batch_size)
        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            mixture.append(block)
            write(stream.push(block))
            if on_input is not None:
                on_input(block.shape[1])
        write(stream.finish())
    return stream.received
