"""ImageBind's input pipelines, reproduced without torchvision/torchaudio.

Audio: 16 kHz mono -> three 2 s clips spread evenly over the file ->
clip mean removed -> 128-bin Kaldi filterbank (25 ms / 10 ms, Hanning, no dither) ->
padded or cut to 204 frames -> ``(fbank + 4.268) / 9.138``.
Images: shorter side to 224 (bicubic) -> centre crop 224 -> CLIP mean/std.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
from PIL import Image

SAMPLE_RATE = 16000
CLIP_SECONDS = 2
CLIPS_PER_FILE = 3
MEL_BINS = 128
TARGET_FRAMES = 204
FBANK_MEAN = -4.268
FBANK_STD = 9.138
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# -- Kaldi filterbank ------------------------------------------------------------------------


def _mel(hz):
    """Kaldi's mel scale (natural log, 1127)."""
    return 1127.0 * torch.log1p(hz / 700.0) if isinstance(hz, torch.Tensor) else 1127.0 * math.log1p(hz / 700.0)


def kaldi_mel_banks(num_bins: int, padded_window: int, sample_rate: float, low_freq: float = 20.0, high_freq: float = 0.0) -> torch.Tensor:
    """Triangular filters, linear in the mel domain, over FFT bins ``0 .. padded_window/2`` (the Nyquist bin gets 0)."""
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    mel_low, mel_high = _mel(low_freq), _mel(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    index = torch.arange(num_bins, dtype=torch.float32).unsqueeze(1)
    left = mel_low + index * delta
    centre = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta
    fft_bins = padded_window // 2
    mel = _mel((sample_rate / padded_window) * torch.arange(fft_bins, dtype=torch.float32)).unsqueeze(0)
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))


def kaldi_fbank(
    wave: torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
    num_mel_bins: int = MEL_BINS,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    preemphasis: float = 0.97,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
) -> torch.Tensor:
    """Log mel filterbank ``[frames, num_mel_bins]`` as Kaldi's ``compute-fbank-feats`` defines it.

    Settings are ImageBind's: Hanning (symmetric Hann) window, no dither, no
    energy term, edges snipped (frames fully inside the signal), FFT size the
    next power of two, per-frame DC removal, pre-emphasis, power spectrum,
    log with a floor of float32 epsilon.
    """
    wave = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
    window_size = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    padded = 1 << (window_size - 1).bit_length()
    if wave.numel() < window_size:
        return torch.zeros(0, num_mel_bins)
    frames = wave.unfold(0, window_size, shift)  # [F, window]
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - preemphasis * previous
    frames = frames * torch.hann_window(window_size, periodic=False, dtype=torch.float32)
    frames = torch.nn.functional.pad(frames, (0, padded - window_size))
    power = torch.fft.rfft(frames).abs().pow(2.0)
    mel_energies = power @ kaldi_mel_banks(num_mel_bins, padded, sample_rate, low_freq, high_freq).T
    return torch.clamp(mel_energies, min=torch.finfo(torch.float32).eps).log()


# -- clip sampling ---------------------------------------------------------------------------


def clip_bounds(num_samples: int, sample_rate: int = SAMPLE_RATE, clip_seconds: int = CLIP_SECONDS, clips: int = CLIPS_PER_FILE) -> list[tuple[int, int]]:
    """Sample ranges of ``clips`` clips spread evenly from the start to the end of the file.

    PyTorchVideo's ``ConstantClipsPerVideoSampler`` as ImageBind uses it:
    starts at ``k * max(duration - clip, 0) / (clips - 1)`` seconds in exact
    fractions, truncated to samples. A file shorter than a clip gives the same
    (short) clip ``clips`` times.
    """
    # Float duration minus the clip length, then exact fractions: the reference's order of operations.
    latest_start = Fraction(max(num_samples / sample_rate - clip_seconds, 0))
    spacing = latest_start / max(clips - 1, 1)
    bounds = []
    for index in range(clips):
        start = spacing * index
        bounds.append((int(start * sample_rate), int((start + clip_seconds) * sample_rate)))
    return bounds


def audio_to_fbank_clips(wave: np.ndarray) -> torch.Tensor:
    """A mono 16 kHz clip -> ``[clips, 1, 128, 204]`` normalised filterbanks."""
    # The reference removes each clip's mean in place on a view of the file, so
    # where clips overlap (files under 6 s) a later clip sees the earlier
    # subtraction; a working copy reproduces that and leaves the input alone.
    work = torch.tensor(np.asarray(wave, dtype=np.float32))
    out = []
    for start, end in clip_bounds(work.numel()):
        clip = work[start:end]
        clip -= clip.mean()
        fbank = kaldi_fbank(clip).T  # [128, frames]
        missing = TARGET_FRAMES - fbank.shape[1]
        if missing > 0:
            fbank = torch.nn.functional.pad(fbank, (0, missing))
        else:
            fbank = fbank[:, :TARGET_FRAMES]
        out.append(((fbank - FBANK_MEAN) / FBANK_STD).unsqueeze(0))
    return torch.stack(out)


# -- images ----------------------------------------------------------------------------------


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size``, longer side scaled and truncated to an integer (torchvision's rule)."""
    width, height = image.size
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    return image.resize(new, Image.BICUBIC)


def centre_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def image_to_pixels(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """``H x W x 3`` uint8 -> ``[3, size, size]`` float32, CLIP-normalised."""
    pil = centre_crop(resize_short_side(Image.fromarray(image), size), size)
    pixels = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (pixels - mean) / std
