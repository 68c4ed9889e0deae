"""Live separation: a query-driven filter with a fixed latency the user chooses.

How a block-online stream is computed
-------------------------------------
The offline path (:mod:`omnisep.apply`) sees the whole file; a live stream
sees only the past plus a look-ahead. Every *hop* (``h`` STFT frames) the
network is run on a window of ``W`` frames (a multiple of its
``time_multiple``) that ends at the newest audio, treating the stream as if
it ended there, exactly as the offline path treats the end of a file (the
last two frames are half zero-padded; silent frames pad the window to the
multiple). The masks of the ``h`` frames that have ``a`` frames of
*look-ahead* after them become final, are applied to the mixture STFT of
those frames (whose windows are complete), and never change again; the
output is the overlap-add (iSTFT) of final masked frames. Because each frame
is decided once and the output is a windowed overlap-add, hops leave no
seams. All of it goes through :mod:`omnisep.models.signal_path`.

Latency (at 16 kHz, ``HOP = 256`` samples = 16 ms):

* a sample is final once every frame reaching it is final: ``768 + 256 a``
  samples of audio after it (the STFT reach, 48 ms, plus the look-ahead);
* frames are decided once per hop, so a sample waits up to ``256 h`` more.

The stream therefore hands out its output delayed by exactly
``L = 256 (3 + a + h)`` samples: after ``N`` input samples, exactly
``max(0, N - L)`` output samples have come out, whatever the block sizes
(the shortest latency is 64 ms: ``a = 0, h = 1``). Other rates go through
soxr streams, whose hold-back is measured once per rate and added to ``L``.

Where the look-ahead and the past context cover the network's context, and
the window sits on the network's ``time_multiple`` grid (``align=True``), a
shift-equivariant network gives the offline result; ``align=False`` (the
default) lets the window end at the newest frame, which halves the window
at depth 7 for the same past context.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import soxr
import torch

from omnisep.apply import BlockEngine
from omnisep.errors import OmniSepError
from omnisep.models import signal_path
from omnisep.queries import QueryRows
from omnisep.spectral import HOP, MAG_EPS, N_FFT, SAMPLE_RATE

_REACH = N_FFT // 2  # samples a frame reaches on each side of its centre
STFT_FRAMES = 3  # 768 samples: the iSTFT reach of a sample plus the window of its last frame
DEFAULT_LATENCY = 0.25
DEFAULT_CONTEXT = 1.0  # seconds of past audio each window keeps at least
PAD_BEFORE = True  # see BlockOnlineSeparator._step
RESAMPLE_QUALITY = "HQ"  # soxr: half VHQ's hold-back, still far below audible error


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def split_latency(latency: float, hop: float | None = None) -> tuple[int, int]:
    """Latency (and optional hop) in seconds -> (look-ahead frames ``a``, hop frames ``h``) at 16 kHz.

    The latency is rounded down to whole frames; without ``hop`` it is split
    evenly between hop and look-ahead.
    """
    if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not math.isfinite(latency):
        raise OmniSepError(f"the latency must be a number of seconds, got {latency!r}.")
    frames = int(math.floor(latency * SAMPLE_RATE / HOP + 1e-9))
    shortest = (STFT_FRAMES + 1) * HOP / SAMPLE_RATE
    if frames < STFT_FRAMES + 1:
        raise OmniSepError(
            f"a latency of {latency * 1000:g} ms is too short: the shortest is {shortest * 1000:g} ms "
            "(the STFT's reach plus one 16 ms frame)."
        )
    spare = frames - STFT_FRAMES  # a + h
    if hop is None:
        h = max(1, spare // 2)
    else:
        if isinstance(hop, bool) or not isinstance(hop, (int, float)) or not hop > 0:
            raise OmniSepError(f"the hop must be a positive number of seconds, got {hop!r}.")
        h = max(1, round(hop * SAMPLE_RATE / HOP))
        if h > spare:
            raise OmniSepError(
                f"a hop of {hop * 1000:g} ms does not fit in a latency of {latency * 1000:g} ms "
                f"(at most {spare * HOP / SAMPLE_RATE * 1000:g} ms is left after the STFT's 48 ms)."
            )
    return spare - h, h


class BlockOnlineSeparator(BlockEngine):
    """The 16 kHz engine (see the module docstring): audio ``[S, n]`` in, final targets ``[Q, S, m]`` out.

    ``push`` returns every output sample that has become final; by the time
    ``N`` samples are in, more than ``N - latency_samples`` are out.
    ``finish`` separates the rest with the true end of the signal.
    """

    def __init__(
        self,
        model,
        queries: torch.Tensor,
        signals: int = 1,
        lookahead_frames: int = 6,
        hop_frames: int = 6,
        context_frames: int = round(DEFAULT_CONTEXT * SAMPLE_RATE / HOP),
        align: bool = False,
        binary: bool | None = None,
        paired: bool = False,
    ):
        """``paired``: query ``i`` belongs to signal ``i`` alone (benchmarks score many mixtures in one batch)."""
        self.paired = bool(paired)
        self.pad_before = PAD_BEFORE
        if self.paired and len(QueryRows.of(queries)) != signals:
            raise ValueError("paired queries need one query per signal")
        if lookahead_frames < 0 or hop_frames < 1 or context_frames < 4:
            raise ValueError("need lookahead_frames >= 0, hop_frames >= 1 and context_frames >= 4")
        self.model = model
        self.device = next(model.parameters()).device
        self.signals = int(signals)
        self.lookahead, self.hop, self.align, self.binary = int(lookahead_frames), int(hop_frames), bool(align), binary
        self.multiple = model.time_multiple
        # Frames from the window's start to the first frame decided at a step:
        # at least the past context (the aligned window can lose up to a
        # multiple - 1 of it to the silent padding at its end).
        extra = self.multiple - 1 if self.align else 0
        self.width = _round_up(context_frames + 2 + self.lookahead + self.hop + extra, self.multiple)
        self.latency_samples = (STFT_FRAMES + self.lookahead + self.hop) * HOP
        self.set_queries(queries)
        self.received = 0
        self.total: int | None = None
        self.steps = 0  # network runs
        self._buffer = np.zeros((self.signals, 0), np.float32)
        self._buffer_start = 0
        self._next_instant = self.hop * HOP
        self._decided = 0  # frames [0, decided) have final masked spectra
        self._masked: torch.Tensor | None = None  # [S, Q, 513, frames] from _masked_start
        self._masked_start = 0
        self._final = 0  # output samples [0, final) are final
        self._ready: list[np.ndarray] = []

    def set_queries(self, queries) -> None:
        """New query vectors ``[Q, D]`` (or QueryRows): they decide the masks from the next hop on."""
        rows = QueryRows.of(queries)
        if self.paired and rows.combine is not None:
            raise ValueError("paired queries cannot combine mask logits")
        if hasattr(self, "queries") and len(rows) != len(self.queries):
            raise ValueError("the number of queries cannot change while streaming")
        self.model.check_queries(rows.rows[None])
        self.queries = rows.to(self.device)

    # -- feeding -------------------------------------------------------------------------------

    def push(self, block: np.ndarray) -> np.ndarray:
        self._accept(block)
        while self._next_instant <= self.received:
            self._step(self._next_instant, final=False)
            self._next_instant += self.hop * HOP
        return self._hand_out()

    def finish(self) -> np.ndarray:
        if self._close():
            self._step(self.total, final=True)
        return self._hand_out()

    # -- one hop -------------------------------------------------------------------------------

    def _step(self, end: int, final: bool) -> None:
        """Decide the frames that ``end`` samples of audio make final, and synthesise the samples they finish."""
        n_frames = end // HOP + 1  # the frames of a signal that ended here (centred STFT)
        decide_to = n_frames if final else n_frames - 2 - self.lookahead
        if decide_to <= self._decided:
            return
        grid_end = _round_up(n_frames, self.multiple) if self.align else n_frames
        first = max(0, grid_end - self.width)
        segment = self._segment(first, n_frames, end)
        wave = torch.from_numpy(segment).to(self.device)
        with torch.inference_mode():
            spec = signal_path.analyse(wave)[..., 2 : 2 + n_frames - first]  # frames [first, n_frames)
            net_in = signal_path.network_input(spec)
            # Until a window's worth of audio has come, the unaligned window is
            # filled with silence *before* the signal, so the newest audio always
            # sits at its right edge (as in steady state); aligned windows pad
            # after it, as the offline path does.
            before = 0 if self.align or not self.pad_before else max(0, self.width - net_in.shape[-1])
            if before:
                net_in = torch.nn.functional.pad(net_in, (before, 0), value=MAG_EPS)
            prepared = self.model.prepare(signal_path.pad_frames(net_in, self.multiple))
            rows = self.queries.rows
            rows = rows[:, None] if self.paired else rows.unsqueeze(0).expand(self.signals, -1, -1)
            lo, hi = before + self._decided - first, before + decide_to - first
            logits = self.queries.logits(self.model, prepared, rows)[..., lo:hi]
            lo, hi = self._decided - first, decide_to - first
            masked = signal_path.apply_masks(spec[..., lo:hi], self.model.masks(logits, self.binary))
        self.steps += 1
        self._masked = masked if self._masked is None else torch.cat([self._masked, masked], dim=-1)
        self._decided = decide_to
        # Samples no undecided frame reaches; frames from two before the first
        # unfinished sample on are the ones that reach it.
        final_to = end if final else (decide_to - 2) * HOP
        if final_to > self._final:
            start = max(0, self._final // HOP - 2)
            frames = self._masked[..., start - self._masked_start : decide_to - self._masked_start]
            with torch.inference_mode():
                out = signal_path.synthesise(frames, final_to - start * HOP).float()  # [S, Q, samples]
            piece = out[..., self._final - start * HOP :].cpu().numpy().transpose(1, 0, 2)
            self._ready.append(np.ascontiguousarray(piece))
            self._final = final_to
        keep = max(0, self._final // HOP - 2)
        self._masked = self._masked[..., keep - self._masked_start :]
        self._masked_start = keep
        # The next window starts at or after this one.
        keep_from = max(self._buffer_start, first * HOP - _REACH)
        self._buffer = self._buffer[:, keep_from - self._buffer_start :]
        self._buffer_start = keep_from

    def _segment(self, first: int, stop: int, end: int) -> np.ndarray:
        """Samples reaching frames [first, stop) of a signal that ends at ``end`` (zeros outside it)."""
        lo, hi = first * HOP - _REACH, (stop - 1) * HOP + _REACH
        out = np.zeros((self.signals, hi - lo), np.float32)
        src_lo = max(lo, self._buffer_start, 0)
        src_hi = min(hi, end, self._buffer_start + self._buffer.shape[1])
        if src_hi > src_lo:
            out[:, src_lo - lo : src_hi - lo] = self._buffer[:, src_lo - self._buffer_start : src_hi - self._buffer_start]
        return out

    def _hand_out(self) -> np.ndarray:
        if not self._ready:
            return np.zeros((1 if self.paired else len(self.queries), self.signals, 0), np.float32)
        out = np.concatenate(self._ready, axis=-1)
        self._ready = []
        return out


@functools.lru_cache(maxsize=32)
def resampler_holdback(rate_in: int, rate_out: int) -> int:
    """The most output samples a soxr stream holds back, measured with one-sample blocks (its worst case)."""
    stream = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    one = np.zeros((1, 1), np.float32)
    worst, produced = 0.0, 0
    for count in range(1, rate_in // 2 + 1):
        produced += len(stream.resample_chunk(one))
        worst = max(worst, count * rate_out / rate_in - produced)
    return int(math.ceil(worst)) + 8


class LiveStream:
    """A live filter: push blocks ``[C, n]`` (or ``[n]``) at any rate, get ``(target, residual)`` blocks back.

    The output is the input's separation delayed by exactly
    :attr:`latency_samples`: after ``N`` input samples, ``max(0, N -
    latency_samples)`` output samples have come out; :meth:`finish` hands
    out the rest, so the concatenated outputs have the input's length, and
    ``target + residual`` equals the input sample for sample. Queries can be
    changed while streaming (:meth:`set_query`). Create one with
    :meth:`omnisep.api.Separator.stream`.
    """

    def __init__(
        self,
        model,
        query: torch.Tensor,
        sample_rate: int = SAMPLE_RATE,
        channels: int = 1,
        latency: float = DEFAULT_LATENCY,
        hop: float | None = None,
        context: float = DEFAULT_CONTEXT,
        align: bool = False,
        label: str = "",
        embed: Callable | None = None,
    ):
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise OmniSepError(f"the sample rate must be a positive integer, got {sample_rate!r}.")
        if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
            raise OmniSepError(f"the channel count must be a positive integer, got {channels!r}.")
        if not (isinstance(context, (int, float)) and context >= 0.25):
            raise OmniSepError(f"the past context must be at least 0.25 seconds, got {context!r}.")
        lookahead, hop_frames = split_latency(latency, hop)
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.label = label
        self._embed = embed
        model.eval()
        self.engine = BlockOnlineSeparator(
            model, _one_query(query), self.channels, lookahead, hop_frames, round(context * SAMPLE_RATE / HOP), align
        )
        #: seconds of audio after a sample that the network sees before deciding it (STFT reach included)
        self.lookahead = (STFT_FRAMES + lookahead) * HOP / SAMPLE_RATE
        #: seconds between network runs
        self.hop = hop_frames * HOP / SAMPLE_RATE
        self._down = self._up = None
        if self.sample_rate == SAMPLE_RATE:
            self.latency_samples = self.engine.latency_samples
        else:
            self._down = soxr.ResampleStream(self.sample_rate, SAMPLE_RATE, self.channels, dtype="float32", quality=RESAMPLE_QUALITY)
            self._up = soxr.ResampleStream(SAMPLE_RATE, self.sample_rate, self.channels, dtype="float32", quality=RESAMPLE_QUALITY)
            down = resampler_holdback(self.sample_rate, SAMPLE_RATE)
            up = resampler_holdback(SAMPLE_RATE, self.sample_rate)
            self.latency_samples = math.ceil((self.engine.latency_samples + down) * self.sample_rate / SAMPLE_RATE) + up
        #: the fixed delay of the output, in seconds
        self.latency = self.latency_samples / self.sample_rate
        self.received = 0
        self.emitted = 0
        self.closed = False
        self._targets: list[np.ndarray] = []  # separated, not yet handed out
        self._target_count = 0
        self._inputs: list[np.ndarray] = []  # input not yet matched by output
        self._input_count = 0
        self._single_input = False  # the last block came as [n]: answer in that layout

    def __repr__(self) -> str:
        return (
            f"LiveStream(query={self.label!r}, rate={self.sample_rate}, channels={self.channels}, "
            f"latency={self.latency * 1000:.1f} ms, lookahead={self.lookahead * 1000:.0f} ms, hop={self.hop * 1000:.0f} ms)"
        )

    @property
    def network_runs(self) -> int:
        return self.engine.steps

    # -- queries -------------------------------------------------------------------------------

    def set_query(self, query=None, **fields) -> None:
        """Change what is separated (an :class:`omnisep.api.Query`, its fields, or a vector); takes effect at the next hop."""
        self._check_open()
        if isinstance(query, (torch.Tensor, QueryRows)):
            rows, label = _one_query(query), "vector"
        else:
            if self._embed is None:
                raise OmniSepError("this stream was made from a bare model: give set_query a query vector.")
            embedded = self._embed(query, fields)
            rows, label = embedded.rows(), embedded.label
        self.engine.set_queries(rows)
        self.label = label

    # -- audio ---------------------------------------------------------------------------------

    def push(self, block) -> tuple[np.ndarray, np.ndarray]:
        """Input ``[C, n]`` (or ``[n]`` for one channel) -> ``(target, residual)`` in the same layout."""
        self._check_open()
        block, single = self._check_block(block)
        self.received += block.shape[1]
        self._inputs.append(block)
        self._input_count += block.shape[1]
        self._take(self.engine.push(self._to_16k(block, last=False)), last=False)
        return self._emit(max(0, self.received - self.latency_samples), single)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """The rest of the output; the stream is closed afterwards."""
        self._check_open()
        self.closed = True
        if self._down is not None:
            self._take(self.engine.push(self._to_16k(np.zeros((self.channels, 0), np.float32), last=True)), last=False)
            self._take(self.engine.finish(), last=True)
        else:
            self._take(self.engine.finish(), last=True)
        # Resampling there and back can end a sample or two off: pad or trim to the input's length.
        missing = self.received - self.emitted - self._target_count
        if missing > 0:
            self._targets.append(np.zeros((self.channels, missing), np.float32))
            self._target_count += missing
        return self._emit(self.received, self.channels == 1 and self._single_input)

    def _check_open(self) -> None:
        if self.closed:
            raise OmniSepError("the live stream is closed (finish() was called); start a new one.")

    def _check_block(self, block) -> tuple[np.ndarray, bool]:
        if isinstance(block, torch.Tensor):
            block = block.detach().cpu().numpy()
        try:
            block = np.asarray(block, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise OmniSepError(f"a live block must be an array of samples, got {type(block).__name__}.") from exc
        single = block.ndim == 1
        if single and self.channels == 1:
            block = block[None]
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise OmniSepError(
                f"a live block must have shape [{self.channels}, n]"
                + (" or [n]" if self.channels == 1 else "")
                + f" (the stream's channel count), got shape {tuple(np.shape(block))}."
            )
        if not np.isfinite(block).all():
            raise OmniSepError("a live block contains NaN or infinite sample values.")
        self._single_input = single
        return block, single

    def _to_16k(self, block: np.ndarray, last: bool) -> np.ndarray:
        if self._down is None:
            return block
        return np.ascontiguousarray(self._down.resample_chunk(np.ascontiguousarray(block.T), last=last).T)

    def _take(self, separated: np.ndarray, last: bool) -> None:
        separated = separated[0]  # one query: [S, m]
        if self._up is not None:
            separated = np.ascontiguousarray(self._up.resample_chunk(np.ascontiguousarray(separated.T), last=last).T)
        if separated.shape[-1]:
            self._targets.append(separated)
            self._target_count += separated.shape[-1]

    def _emit(self, upto: int, single: bool) -> tuple[np.ndarray, np.ndarray]:
        count = upto - self.emitted
        if count > self._target_count:
            raise RuntimeError(f"live stream fell behind its latency by {count - self._target_count} samples")
        target = _take_front(self._targets, count, self.channels)
        mixture = _take_front(self._inputs, count, self.channels)
        self._target_count -= count
        self._input_count -= count
        self.emitted += count
        residual = mixture - target
        return (target[0], residual[0]) if single else (target, residual)


def _take_front(parts: list[np.ndarray], count: int, channels: int) -> np.ndarray:
    """Remove and return the first ``count`` samples of a list of ``[C, n]`` blocks."""
    taken, need = [], count
    while need:
        head = parts[0]
        if head.shape[1] <= need:
            taken.append(parts.pop(0))
            need -= head.shape[1]
        else:
            taken.append(head[:, :need])
            parts[0] = head[:, need:]
            need = 0
    return np.concatenate(taken, axis=1) if taken else np.zeros((channels, 0), np.float32)


def _one_query(query) -> QueryRows:
    """A vector ``[D]`` (or ``[1, D]``) or QueryRows with one output."""
    if isinstance(query, QueryRows):
        if len(query) != 1:
            raise ValueError(f"a live stream separates one query, got {len(query)}")
        return query
    return QueryRows(query.reshape(1, -1))
