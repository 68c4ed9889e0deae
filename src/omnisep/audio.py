"""Audio in and out: any common file in, float32 ``[C, T]`` arrays out, and back.

Reading goes through :class:`AudioReader`, which yields blocks, so that a
one-hour file can be separated with flat memory (``omnisep.apply``) and
:func:`load_audio` is the same decoder with the blocks joined: both paths see
exactly the same samples. libsndfile (soundfile) is tried first because it is
exact and fast for wav/flac/ogg/mp3; FFmpeg (PyAV) takes over for what it
cannot open (the audio track of videos, m4a/aac, opus, ...).

Writing is atomic (a temporary file in the target's folder, then
``os.replace``), so an interrupted run never leaves a half-written file under
the final name, and never clips silently.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import shutil
import sys
import threading
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from omnisep import fileio
from omnisep.errors import OmniSepError, describe

AUDIO_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi"}
SUPPORTED_SUFFIXES = AUDIO_SUFFIXES | VIDEO_SUFFIXES

WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
WRITE_SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")

# Below -80 dBFS a file is silence for every practical purpose: worth a
# warning (the user probably picked the wrong file), not a refusal.
NEAR_SILENT_PEAK = 1e-4

DEFAULT_BLOCK_FRAMES = 1 << 16

# PyAV sample formats -> the factor that maps their integers onto [-1, 1).
_INTEGER_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def peak_dbfs(peak: float) -> float:
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def _format_list() -> str:
    return ", ".join(sorted(s.lstrip(".") for s in SUPPORTED_SUFFIXES))


# At most this many channels in an array taken as [samples, channels] (soundfile's layout).
MAX_SAMPLES_FIRST_CHANNELS = 8


def float_samples(array, source: str = "the audio") -> np.ndarray:
    """Any real sample array as float32, integers scaled by their type's range onto [-1, 1).

    Floats pass through unchanged; ``int16`` is divided by 32768, ``uint8`` is
    centred on 128 first (as WAV stores it). One rule for mixtures and audio queries.
    """
    audio = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
    kind = audio.dtype.kind
    if kind == "f":
        return np.asarray(audio, dtype=np.float32)
    if kind in "iu":
        info = np.iinfo(audio.dtype)
        scale = 2.0 ** (info.bits - 1)
        offset = scale if kind == "u" else 0.0
        return ((audio.astype(np.float64) - offset) / scale).astype(np.float32)
    raise OmniSepError(f"{source} must hold real numbers (float or integer samples), got {audio.dtype} values.")


def channels_first(array, source: str = "the audio") -> tuple[np.ndarray, str]:
    """An audio array as float32 ``[C, T]``, and the layout it came in: ``"mono"``, ``"channels_first"``, ``"samples_first"``.

    ``[T]`` and ``[C, T]`` are the documented layouts. An array whose first
    axis is longer than its second with at most 8 columns is
    ``soundfile.read``'s ``[T, C]``: it is transposed (results go back in the
    same layout). Anything else with more than 64 channels is refused rather
    than separated as thousands of tiny signals.
    """
    audio = float_samples(array, source)
    if audio.ndim == 1:
        return audio[None], "mono"
    if audio.ndim != 2:
        raise OmniSepError(f"{source} must be an array [channels, samples] or [samples], got shape {tuple(audio.shape)}.")
    rows, columns = audio.shape
    if rows > columns and 1 <= columns <= MAX_SAMPLES_FIRST_CHANNELS:
        return np.ascontiguousarray(audio.T), "samples_first"
    if rows > 64:
        raise OmniSepError(
            f"{source} has shape {tuple(audio.shape)}, which would be {rows} channels of {columns} samples; "
            "pass [channels, samples] (or [samples, channels] with at most 8 channels)."
        )
    return audio, "channels_first"


def restore_layout(audio: np.ndarray, layout: str) -> np.ndarray:
    """Undo :func:`channels_first` on a ``[C, T]`` result."""
    if layout == "mono":
        return audio[0]
    if layout == "samples_first":
        return np.ascontiguousarray(audio.T)
    return audio


_STDERR_LOCK = threading.Lock()
_stderr_state = {"depth": 0, "saved": None}


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hide what C decoders print on file descriptor 2 (mpg123's "Note: Trying to resync...").

    Their findings reach the user as our own one-sentence error instead. Nested
    and concurrent uses (threads of the web demo) share one redirection: the
    first in redirects, the last out restores.
    """
    with _STDERR_LOCK:
        if _stderr_state["depth"] == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError, AttributeError):
                saved = None
            if saved is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            _stderr_state["saved"] = saved
        _stderr_state["depth"] += 1
    try:
        yield
    finally:
        with _STDERR_LOCK:
            _stderr_state["depth"] -= 1
            if _stderr_state["depth"] == 0 and _stderr_state["saved"] is not None:
                os.dup2(_stderr_state["saved"], 2)
                os.close(_stderr_state["saved"])
                _stderr_state["saved"] = None


def check_input_file(path: str | os.PathLike) -> Path:
    """The checks that need no decoding: exists, is a file, is not empty."""
    path = Path(path)
    if not path.exists():
        raise OmniSepError(f"{describe(path)} does not exist.")
    if path.is_dir():
        raise OmniSepError(f"{describe(path)} is a folder, not an audio or video file.")
    if path.stat().st_size == 0:
        raise OmniSepError(f"{describe(path)} is empty (0 bytes).")
    return path


class AudioReader:
    """Decodes a file block by block into float32 ``[C, n]`` arrays.

    Raises :class:`OmniSepError` for every way a file can be unusable,
    including NaN/Inf samples and truncation, which only show while decoding;
    iterate once (a reader is not rewindable).
    """

    def __init__(self, path: str | os.PathLike, block_frames: int = DEFAULT_BLOCK_FRAMES):
        self.path = check_input_file(path)
        self.block_frames = int(block_frames)
        self.frames_read = 0
        self.peak = 0.0
        self._soundfile: sf.SoundFile | None = None
        self._container = None
        self._promised_frames: int | None = None
        self._header_seconds: float | None = None  # PyAV: the duration the container announces
        self._only_stream = False
        _check_ogg_end(self.path)
        try:
            with _native_stderr_silenced():
                self._soundfile = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError):
            self._open_with_pyav()
        else:
            self.sample_rate = int(self._soundfile.samplerate)
            self.channels = int(self._soundfile.channels)
            self._promised_frames = int(self._soundfile.frames)
            self._check_soundfile_header()

    # -- opening -------------------------------------------------------------------------------

    def _check_soundfile_header(self) -> None:
        info = self._soundfile.extra_info
        # libsndfile reads a cut-off WAV without complaint but notes the
        # shortfall ("data : 352800 (should be 176378)"); a cut-off Ogg reads
        # as empty with "ended unexpectedly". Both are truncation.
        for promised, present in re.findall(r"data\s*:\s*(\d+)\s*\(should be (\d+)\)", info):
            if int(promised) > int(present):
                self.close()
                raise OmniSepError(
                    f"{describe(self.path)} is truncated: its header promises {int(promised)} bytes "
                    f"of audio but the file holds {int(present)}."
                )
        if "ended unexpectedly" in info:
            self.close()
            raise OmniSepError(f"{describe(self.path)} is truncated: the stream ends before its end marker.")

    def _open_with_pyav(self) -> None:
        import av

        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
            if self.path.suffix.lower() in SUPPORTED_SUFFIXES:
                raise OmniSepError(
                    f"{describe(self.path)} is corrupt or not really a {self.path.suffix.lstrip('.')} file "
                    "and could not be decoded."
                ) from None
            raise OmniSepError(
                f"{describe(self.path)} is not in a supported audio or video format ({_format_list()})."
            ) from None
        if not self._container.streams.audio:
            self.close()
            if self.path.suffix.lower() not in SUPPORTED_SUFFIXES:
                # FFmpeg opens nearly anything (text, images) as some stream.
                raise OmniSepError(
                    f"{describe(self.path)} is not in a supported audio or video format ({_format_list()})."
                )
            raise OmniSepError(f"{describe(self.path)} has no audio stream.")
        stream = self._container.streams.audio[0]
        codec = stream.codec_context
        self._stream = stream
        if stream.duration and stream.time_base:
            self._header_seconds = float(stream.duration * stream.time_base)
        elif self._container.duration:
            self._header_seconds = float(self._container.duration) / 1_000_000
        self._only_stream = len(self._container.streams) == 1
        self.sample_rate = int(codec.sample_rate or stream.rate or 0)
        self.channels = int(codec.layout.nb_channels if codec.layout else codec.channels)
        if self.sample_rate <= 0 or self.channels <= 0:
            self.close()
            raise OmniSepError(
                f"{describe(self.path)} is corrupt or not really a {self.path.suffix.lstrip('.') or 'media'} file: "
                "its audio stream has no sample rate or channel count."
            )

    @property
    def duration_estimate(self) -> float | None:
        """Seconds, from the header; for progress bars only (may be approximate or unknown)."""
        if self._promised_frames is not None:
            return self._promised_frames / self.sample_rate
        if self._container is not None and self._container.duration:
            return float(self._container.duration) / 1_000_000
        return None

    # -- decoding ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            blocks = self._soundfile_blocks() if self._soundfile is not None else self._pyav_blocks()
            for block in blocks:
                if block.shape[1] == 0:
                    continue
                if not np.isfinite(block).all():
                    raise OmniSepError(f"{describe(self.path)} contains NaN or infinite sample values.")
                self.frames_read += block.shape[1]
                self.peak = max(self.peak, float(np.abs(block).max()))
                yield block
            self._check_complete()
        finally:
            self.close()

    def _soundfile_blocks(self) -> Iterator[np.ndarray]:
        while True:
            try:
                with _native_stderr_silenced():
                    block = self._soundfile.read(self.block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError):
                raise OmniSepError(
                    f"{describe(self.path)} is corrupt or truncated and could not be decoded."
                ) from None
            if block.shape[0] == 0:
                return
            yield np.ascontiguousarray(block.T)

    def _pyav_blocks(self) -> Iterator[np.ndarray]:
        import av

        pending: list[np.ndarray] = []
        pending_frames = 0
        try:
            for frame in self._container.decode(self._stream):
                samples = _frame_to_float(frame)
                if samples.shape[0] != self.channels:
                    raise OmniSepError(f"{describe(self.path)} changes its channel count midway, which is not supported.")
                pending.append(samples)
                pending_frames += samples.shape[1]
                if pending_frames >= self.block_frames:
                    yield np.concatenate(pending, axis=1)
                    pending, pending_frames = [], 0
        except av.FFmpegError:
            raise OmniSepError(f"{describe(self.path)} is corrupt or truncated and could not be decoded.") from None
        if pending:
            yield np.concatenate(pending, axis=1)

    def _check_complete(self) -> None:
        if self.frames_read == 0:
            raise OmniSepError(f"{describe(self.path)} contains no audio samples (zero length).")
        # mp3 and others announce their length up front; fewer samples means a cut-off file.
        if self._promised_frames is not None and self.frames_read < self._promised_frames:
            raise OmniSepError(
                f"{describe(self.path)} is truncated: its header promises {self._promised_frames} samples "
                f"but only {self.frames_read} could be decoded."
            )
        # Matroska/WebM (and others PyAV reads) state their duration up front;
        # decoding that stops well short of it means the file was cut off.
        decoded = self.frames_read / self.sample_rate
        if self._header_seconds and decoded < self._header_seconds - max(0.5, 0.02 * self._header_seconds):
            message = (
                f"{describe(self.path)} looks truncated: its header gives {self._header_seconds:.1f} s of audio "
                f"but decoding stopped at {decoded:.1f} s"
            )
            if self._only_stream:
                raise OmniSepError(message + ".")
            # With a video stream the container's length may be the video's: say so, do not refuse.
            warnings.warn(message + " (the container may hold a longer video track).", stacklevel=3)
        if self.peak < NEAR_SILENT_PEAK:
            warnings.warn(
                f"{describe(self.path)} is near-silent (peak {peak_dbfs(self.peak):.1f} dBFS); is it the right file?",
                stacklevel=3,
            )

    def close(self) -> None:
        if self._soundfile is not None:
            self._soundfile.close()
            self._soundfile = None
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # header, lacing table, payload


def _check_ogg_end(path: Path) -> None:
    """An Ogg stream ends with a page flagged end-of-stream; a cut-off file does not.

    libsndfile and FFmpeg both take the last granule position found as the
    length, so a truncated Ogg would otherwise decode to a shorter "complete" file.
    """
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"OggS":
                return
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _OGG_MAX_PAGE))
            tail = handle.read()
    except OSError:
        return  # the decoder will name the problem
    last = tail.rfind(b"OggS")
    if last < 0 or len(tail) < last + 6 or not tail[last + 5] & 0x04:
        raise OmniSepError(
            f"{describe(path)} is truncated: the Ogg stream ends without its end-of-stream page "
            "(the file was cut off while copying or recording)."
        )


def _frame_to_float(frame) -> np.ndarray:
    """One decoded PyAV frame -> float32 [C, n], whatever its sample format."""
    array = frame.to_ndarray()
    if not frame.format.is_planar:
        array = array.reshape(-1, frame.layout.nb_channels).T  # packed: [1, n * C] interleaved
    name = frame.format.name.rstrip("p")
    if name in _INTEGER_SCALE:
        offset = 128.0 if name == "u8" else 0.0
        array = (array.astype(np.float64) - offset) / _INTEGER_SCALE[name]
    return np.ascontiguousarray(array, dtype=np.float32)


def load_audio(
    path: str | os.PathLike, sample_rate: int | None = None, mono: bool = False
) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 ``[C, T]`` (``C = 1`` with ``mono``), resampled when asked."""
    reader = AudioReader(path)
    audio = np.concatenate(list(reader), axis=1)
    rate = reader.sample_rate
    if mono:
        audio = downmix(audio)
    if sample_rate is not None and sample_rate != rate:
        audio = resample(audio, rate, sample_rate)
        rate = int(sample_rate)
    return audio, rate


def downmix(audio: np.ndarray) -> np.ndarray:
    """Mean over channels, kept as one channel ``[1, T]``."""
    return audio.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """soxr 'VHQ' resampling of ``[C, T]`` or ``[T]``; the layout is kept."""
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} and {target_sr}")
    audio = np.asarray(audio, dtype=np.float32)
    if orig_sr == target_sr:
        return audio.copy()
    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr, quality="VHQ").astype(np.float32, copy=False)
    # soxr wants channels last.
    out = soxr.resample(np.ascontiguousarray(audio.T), orig_sr, target_sr, quality="VHQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


# -- writing ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _output_errors(path: Path):
    """OS and libsndfile refusals while writing ``path`` -> one sentence (libsndfile says only "System error.")."""
    try:
        with fileio.output_errors(path):
            yield
    except (sf.LibsndfileError, RuntimeError) as error:
        try:
            full = shutil.disk_usage(path.parent).free < 1 << 20
        except OSError:
            full = False
        if full:
            raise OmniSepError(fileio.os_error_sentence(path, OSError(errno.ENOSPC, "No space left on device"))) from None
        raise OmniSepError(f"{describe(path)} could not be written ({error}).") from None


def _check_output(path: Path, subtype: str, overwrite: bool) -> str:
    """Validate an output path before any work is done; returns the libsndfile format."""
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OmniSepError(f"{describe(path)} must end in .wav or .flac to choose the output format.")
    if subtype not in WRITE_SUBTYPES:
        raise OmniSepError(f"{describe(path)}: sample format {subtype!r} is not one of {', '.join(WRITE_SUBTYPES)}.")
    if fmt == "FLAC" and subtype == "FLOAT":
        raise OmniSepError(f"{describe(path)}: FLAC cannot store float samples; choose 16 or 24 bits, or a .wav file.")
    if path.exists() and not overwrite:
        raise OmniSepError(f"{describe(path)} already exists; pass --overwrite (overwrite=True) to replace it.")
    if path.is_dir():
        raise OmniSepError(f"{describe(path)} is a folder, so no audio file can be written there.")
    return fmt


def _warn_clipping(path: Path, peak: float, subtype: str) -> None:
    warnings.warn(
        f"{describe(path)}: peak {peak:.3f} ({peak_dbfs(peak):+.1f} dBFS) is above full scale and was clipped "
        f"to [-1, 1] in the {subtype} file; write float samples to keep it.",
        stacklevel=3,
    )


def _as_channels_first(audio) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise ValueError(f"audio must be [C, T] or [T], got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("refusing to write NaN or infinite samples")
    return audio


def save_audio(
    path: str | os.PathLike,
    audio: np.ndarray,
    sample_rate: int,
    subtype: str = "PCM_16",
    overwrite: bool = False,
) -> float:
    """Write ``[C, T]`` (or ``[T]``) to .wav/.flac atomically; returns the peak before any clipping."""
    path = Path(path)
    fmt = _check_output(path, subtype, overwrite)
    audio = _as_channels_first(audio)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if subtype != "FLOAT" and peak > 1.0:
        _warn_clipping(path, peak, subtype)
        audio = np.clip(audio, -1.0, 1.0)
    with _output_errors(path), fileio.atomic_path(path) as temp:
        sf.write(str(temp), audio.T, int(sample_rate), subtype=subtype, format=fmt)
    return peak


class AudioWriter:
    """Streaming counterpart of :func:`save_audio`: blocks in, one atomic file out.

    The file appears under its name only on a clean :meth:`close` (or a clean
    ``with`` exit); on error the temporary file is removed. Clipping is
    reported once, at the end, with the overall peak.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_rate: int,
        channels: int,
        subtype: str = "PCM_16",
        overwrite: bool = False,
    ):
        self.path = Path(path)
        self.subtype = subtype
        self.overwrite = overwrite
        fmt = _check_output(self.path, subtype, overwrite)
        self._file = None
        with _output_errors(self.path):
            fileio.clean_stale_partials(self.path)
            self._temp_name = fileio.new_partial_file(self.path)
            try:
                self._file = sf.SoundFile(
                    str(self._temp_name), "w", samplerate=int(sample_rate), channels=int(channels), subtype=subtype,
                    format=fmt,
                )
            except BaseException:
                fileio.discard(self._temp_name)
                raise
        self.peak = 0.0
        self.frames_written = 0

    def write(self, block: np.ndarray) -> None:
        block = _as_channels_first(block)
        if block.shape[1] == 0:
            return
        peak = float(np.abs(block).max())
        self.peak = max(self.peak, peak)
        if self.subtype != "FLOAT" and peak > 1.0:
            block = np.clip(block, -1.0, 1.0)
        with _output_errors(self.path):
            self._file.write(block.T)
        self.frames_written += block.shape[1]

    def close(self) -> float:
        """Finish the file and move it into place; returns the peak before clipping."""
        if self._file is None:
            return self.peak
        try:
            with _output_errors(self.path):
                self._file.close()
            self._file = None
            if self.path.exists() and not self.overwrite:
                # Someone else wrote it while we worked: do not clobber their file.
                raise OmniSepError(
                    f"{describe(self.path)} was created by another program while separating; that file was kept "
                    "and this run's output for it was dropped."
                )
            with _output_errors(self.path):
                fileio.commit(self._temp_name, self.path)
        except BaseException:
            self.abort()
            raise
        if self.subtype != "FLOAT" and self.peak > 1.0:
            _warn_clipping(self.path, self.peak, self.subtype)
        return self.peak

    def abort(self) -> None:
        """Drop the partial file; the final name is never touched."""
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        fileio.discard(self._temp_name)

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
