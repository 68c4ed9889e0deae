"""`omnisep live`: separate as you listen, from a pipe or a sound card, with a latency you choose."""

from __future__ import annotations

import os
import sys
import time

import click
import numpy as np

from omnisep.cli.separate import _modality_options, _parts_key, parse_weights
from omnisep import modalities
from omnisep.errors import OmniSepError

RAW_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}

EXAMPLES = """
\b
Examples:
  ffmpeg -i street.mp4 -f s16le -ac 1 -ar 16000 - | omnisep live --text "dog barking" | ffplay -f s16le -ar 16000 -ac 1 -
  arecord -f S16_LE -r 48000 -c 2 | omnisep live --text speech --rate 48000 --channels 2 --output residual | aplay -f S16_LE -r 48000 -c 2
  sox in.wav -t wav - | omnisep live --text violin --format wav > violin.raw
  omnisep live --text "speech" --latency 0.1 --input-device 2 --output-device 3   # sound card (pip install 'omnisep[live]')
  omnisep live --list-devices
"""


def _import_sounddevice():
    """sounddevice (PortAudio) is optional: one clear error when it or PortAudio is missing."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise OmniSepError(
            "sound-card mode needs the 'sounddevice' package and the PortAudio library "
            f"(pip install 'omnisep[live]'; on Debian/Ubuntu also apt-get install libportaudio2): {exc}."
        ) from None
    return sounddevice


def _to_pcm(block: np.ndarray, dtype: np.dtype) -> tuple[bytes, int]:
    """``[C, n]`` float -> interleaved bytes; returns the number of clipped samples for integer formats."""
    frames = np.ascontiguousarray(block.T)
    if dtype.kind == "f":
        return frames.astype(dtype).tobytes(), 0
    clipped = int(np.count_nonzero(np.abs(frames) > 1.0))
    return (np.clip(frames, -1.0, 1.0) * 32767.0).round().astype(dtype).tobytes(), clipped


def _raw_blocks(stream, dtype: np.dtype, channels: int, block_frames: int):
    """Blocks ``[C, n]`` from raw interleaved PCM, as soon as bytes arrive (a partial frame waits for the rest)."""
    frame_bytes = dtype.itemsize * channels
    pending = b""
    read = getattr(stream, "read1", stream.read)
    while True:
        data = read(block_frames * frame_bytes)
        if not data:
            break
        pending += data
        usable = len(pending) - len(pending) % frame_bytes
        if usable:
            samples = np.frombuffer(pending[:usable], dtype=dtype).reshape(-1, channels).T
            pending = pending[usable:]
            yield samples.astype(np.float32) / 32768.0 if dtype.kind == "i" else samples.astype(np.float32)
    if pending:
        click.echo(f"omnisep: warning: the input ended inside a sample frame; {len(pending)} byte(s) ignored", err=True)


def _wav_blocks(stream, block_frames: int):
    import soundfile

    try:
        # The descriptor, not the Python file: libsndfile reads wav from a pipe itself (no seeking).
        handle = soundfile.SoundFile(stream.fileno(), closefd=False)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise OmniSepError(f"standard input is not a readable wav stream ({exc}).") from None

    def blocks():
        while True:
            block = handle.read(block_frames, dtype="float32", always_2d=True)  # not .blocks(): that seeks
            if not len(block):
                break
            yield np.ascontiguousarray(block.T)

    return handle.samplerate, handle.channels, blocks()


@click.command("live", epilog=EXAMPLES)
@_modality_options(negative=False)
@_modality_options(negative=True)
@click.option("--weights", metavar="W1,W2,..", help="Weights of the query parts (texts, images, audios in that order).")
@click.option("--alpha", default=None, type=click.FloatRange(min=0), help="Strength of the negative query [default: the model's].")
@click.option("--contrast", default=None, type=click.FloatRange(min=0),
              help="Query contrast [default: the model's]; 0 costs about half the compute with v2 (docs/live.md).")
@click.option("--latency", default=0.25, show_default=True, type=float,
              help="Seconds between a sound going in and its separation coming out (at least 0.064; more look-ahead, better separation).")
@click.option("--hop", type=float, help="Seconds between network runs (default: half of what the latency leaves; larger is cheaper).")
@click.option("--output", "which", default="target", show_default=True, type=click.Choice(["target", "residual"]),
              help="What to play or write: the queried sound, or everything else.")
@click.option("--format", "pcm_format", default="s16le", show_default=True, type=click.Choice(["s16le", "f32le", "wav"]),
              help="Pipe mode: the input's format (raw little-endian PCM, or a wav stream); the output is raw PCM (s16le for wav input).")
@click.option("--rate", default=16000, show_default=True, type=click.IntRange(min=1), help="Pipe mode, raw PCM: sample rate.")
@click.option("--channels", default=1, show_default=True, type=click.IntRange(min=1), help="Pipe mode, raw PCM / sound card: channels.")
@click.option("--input-device", help="Sound card mode: the capture device (index or name, see --list-devices).")
@click.option("--output-device", help="Sound card mode: the playback device.")
@click.option("--list-devices", is_flag=True, help="List the sound devices and exit.")
@click.option("--card", is_flag=True, help="Use the sound card even when standard input is a pipe.")
@click.option("--model", default="default", show_default=True, help="Model name (see `omnisep models`) or checkpoint folder.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="CPU threads for the network.")
def live(weights, alpha, contrast, latency, hop, which, pcm_format, rate, channels, input_device, output_device, list_devices, card, model, threads, **parts):
    """Separate a live signal: standard input to standard output, or a sound card's input to its output.

    The output is the input's separation delayed by a fixed latency (shown
    on standard error). Pipe mode runs when standard input is not a
    terminal; otherwise (or with --card) the sound card is used.
    Ctrl-C stops cleanly; input overflows and output underruns are counted.
    """
    if list_devices:
        click.echo(str(_import_sounddevice().query_devices()))
        return
    from omnisep.api import Query

    positive = {m.name: list(parts[_parts_key(m, False)]) for m in modalities.ALL}
    negative = {m.negative_keyword: list(parts[_parts_key(m, True)]) or None for m in modalities.ALL}
    if not any(positive.values()):
        raise click.UsageError(f"give at least one query: {modalities.listing()}.")
    query = Query(**{k: v or None for k, v in positive.items()}, weights=parse_weights(weights), alpha=alpha,
                  contrast=contrast, **negative)
    import torch

    torch.set_num_threads(threads)
    if card or sys.stdin.isatty():
        _run_card(query, model, latency, hop, which, channels, input_device, output_device)
    else:
        _run_pipe(query, model, latency, hop, which, pcm_format, rate, channels)


def _make_stream(query, model, rate, channels, latency, hop):
    from omnisep.api import Separator

    separator = Separator(model)
    stream = separator.stream(query, sample_rate=rate, channels=channels, latency=latency, hop=hop)
    click.echo(
        f"omnisep: live '{stream.label}' at {rate} Hz x {channels}: latency {stream.latency * 1000:.0f} ms "
        f"(look-ahead {stream.lookahead * 1000:.0f} ms, hop {stream.hop * 1000:.0f} ms)",
        err=True,
    )
    return stream


def _run_pipe(query, model, latency, hop, which, pcm_format, rate, channels):
    source = sys.stdin.buffer
    if pcm_format == "wav":
        rate, channels, blocks = _wav_blocks(source, 1024)
        out_dtype = RAW_FORMATS["s16le"]
    else:
        out_dtype = RAW_FORMATS[pcm_format]
        blocks = _raw_blocks(source, out_dtype, channels, 1024)
    stream = _make_stream(query, model, rate, channels, latency, hop)
    sink = sys.stdout.buffer
    pick = 0 if which == "target" else 1
    clipped = 0
    try:
        for block in blocks:
            data, count = _to_pcm(stream.push(block)[pick], out_dtype)
            clipped += count
            if data:
                sink.write(data)
                sink.flush()
        data, count = _to_pcm(stream.finish()[pick], out_dtype)
        clipped += count
        sink.write(data)
        sink.flush()
    except KeyboardInterrupt:
        click.echo("omnisep: stopped", err=True)
    except BrokenPipeError:
        # The reader went away (ffplay closed): stop quietly, as `head` would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    if clipped:
        click.echo(f"omnisep: warning: {clipped} output sample(s) were clipped to the 16-bit range", err=True)


def _run_card(query, model, latency, hop, which, channels, input_device, output_device):
    sd = _import_sounddevice()
    from rich.console import Console
    from rich.live import Live

    def device(value):
        return int(value) if value is not None and value.isdigit() else value

    try:
        info = sd.query_devices(device(input_device), "input")
    except (ValueError, sd.PortAudioError) as exc:
        raise OmniSepError(f"no usable capture device {input_device!r}: {exc}.") from None
    rate = int(info["default_samplerate"])
    stream = _make_stream(query, model, rate, channels, latency, hop)
    block = max(64, round(stream.hop * rate))
    pick = 0 if which == "target" else 1
    overflows = underruns = 0
    console = Console(stderr=True)
    try:
        audio = sd.Stream(
            samplerate=rate, blocksize=block, channels=channels, dtype="float32",
            device=(device(input_device), device(output_device)),
        )
    except (ValueError, sd.PortAudioError) as exc:
        raise OmniSepError(f"cannot open the sound card ({exc}).") from None
    started = time.monotonic()
    with audio, Live(console=console, refresh_per_second=10, transient=False) as meter:
        try:
            while True:
                data, overflowed = audio.read(block)
                overflows += bool(overflowed)
                out = stream.push(data.T)[pick]
                # Until `latency` has gone in, the stream gives less than it gets: the
                # missing start is silence, so the card plays as much as it records.
                short = data.shape[0] - out.shape[-1]
                if short > 0:
                    out = np.concatenate([np.zeros((channels, short), np.float32), out], axis=1)
                underruns += bool(audio.write(np.ascontiguousarray(out.T)))
                meter.update(_meter(data.T, out, overflows, underruns, time.monotonic() - started))
        except KeyboardInterrupt:
            pass
    click.echo(
        f"omnisep: stopped after {time.monotonic() - started:.1f} s; input overflows {overflows}, output underruns {underruns}",
        err=True,
    )


def _meter(mixture: np.ndarray, output: np.ndarray, overflows: int, underruns: int, seconds: float) -> str:
    def bar(x: np.ndarray) -> str:
        level = 20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-9) if x.size else -90.0
        filled = int(np.clip((level + 60) / 60 * 30, 0, 30))
        return f"[green]{'#' * filled}[/green]{'.' * (30 - filled)} {level:6.1f} dBFS"

    return (
        f"in  {bar(mixture)}\nout {bar(output)}\n"
        f"{seconds:7.1f} s   overflows {overflows}   underruns {underruns}   (Ctrl-C stops)"
    )
