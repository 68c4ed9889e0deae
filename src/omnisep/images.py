"""Still images and video frames for image queries, as ``H x W x 3`` uint8 arrays.

Every encoder takes the same RGB uint8 layout, so decoding (Pillow for stills,
FFmpeg through PyAV for video) happens once, here, and each encoder does only
its own resizing and normalisation.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from omnisep.errors import OmniSepError, describe

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

# Transparent pixels are shown on white, as image viewers and emoji sets do:
# flattening on black would turn a transparent background into a dark object.
BACKGROUND = (255, 255, 255)


def _flatten(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        canvas.alpha_composite(rgba)
        image = canvas
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _from_array(array: np.ndarray, source: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.shape[0] == 0 or array.shape[1] == 0:
        raise OmniSepError(f"{source} must be an H x W x 3 (or x 4) image array, got shape {tuple(array.shape)}.")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            if not np.isfinite(array).all():
                raise OmniSepError(f"{source} contains NaN or infinite pixel values.")
            # Floats are taken as [0, 1] images, the convention of Pillow/matplotlib.
            array = np.clip(np.rint(array * 255.0), 0, 255)
        array = array.astype(np.uint8)
    if array.shape[2] == 4:
        return _flatten(Image.fromarray(array, mode="RGBA"))
    return np.ascontiguousarray(array)


def load_image(path_or_array, source: str | None = None) -> np.ndarray:
    """Decode an image file (or check an array) into an ``H x W x 3`` uint8 RGB array.

    Alpha is flattened on white; animated files give their first frame.
    """
    if not isinstance(path_or_array, (str, os.PathLike)):
        return _from_array(path_or_array, source or "The image query")
    path = Path(path_or_array)
    if not path.is_file():
        raise OmniSepError(f"Image {describe(path)} does not exist.")
    if path.stat().st_size == 0:
        raise OmniSepError(f"Image {describe(path)} is empty (0 bytes).")
    try:
        with Image.open(path) as image:
            image.load()
            # Phone photos are stored sideways with an EXIF note: show them the way viewers do.
            return _flatten(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError:
        raise OmniSepError(
            f"Image {describe(path)} is too large to decode safely (over {Image.MAX_IMAGE_PIXELS:,} pixels, "
            "Pillow's limit against decompression bombs); scale it down first."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise OmniSepError(f"Image {describe(path)} cannot be read as an image ({type(exc).__name__}: {exc}).") from None


def video_frames(
    path: str | os.PathLike, fps: float = 1.0, start: float | None = None, end: float | None = None
) -> list[np.ndarray]:
    """Frames of a video at ``fps`` frames per second between ``start`` and ``end`` seconds.

    Sampling takes, for each instant ``t = start + k / fps``, the last decoded
    frame shown at or before ``t`` (what a player would show), so the result
    does not depend on the file's own frame rate.
    """
    import av  # deferred: PyAV is heavy to import and only videos need it

    path = Path(path)
    if not path.is_file():
        raise OmniSepError(f"Video {describe(path)} does not exist.")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    start_s = max(0.0, float(start or 0.0))
    end_s = float(end) if end is not None else float("inf")
    if end_s <= start_s:
        raise OmniSepError(f"Video {describe(path)}: the time range {start_s:g}-{end_s:g} s is empty.")
    step = Fraction(1) / Fraction(fps).limit_denominator(1000)
    next_time = Fraction(start_s).limit_denominator(1_000_000)
    frames: list[np.ndarray] = []
    shown = None  # the decoded frame on screen at next_time, converted only when sampled
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise OmniSepError(f"Video {describe(path)} has no video stream.")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            period = Fraction(1) / Fraction(stream.average_rate) if stream.average_rate else Fraction(0)
            last_time = None
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                time = Fraction(frame.time).limit_denominator(1_000_000)
                # Instants before this frame's time show the previous frame (or this
                # one, when the stream starts a little after the instant).
                while next_time < time and next_time < end_s:
                    frames.append((shown or frame).to_ndarray(format="rgb24"))
                    next_time += step
                if next_time >= end_s:
                    break
                shown, last_time = frame, time
            else:
                # The last frame stays on screen for one frame period.
                while shown is not None and next_time < end_s and (
                    next_time < last_time + period or (period == 0 and next_time <= last_time)
                ):
                    frames.append(shown.to_ndarray(format="rgb24"))
                    next_time += step
    except OmniSepError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise OmniSepError(f"Video {describe(path)} cannot be decoded ({type(exc).__name__}: {exc}).") from None
    if not frames:
        raise OmniSepError(f"Video {describe(path)} has no frame between {start_s:g} s and {end_s:g} s.")
    return [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]


def centre_frames(frames: list[np.ndarray], radius: int = 1) -> list[np.ndarray]:
    """The frames at centre-1, centre, centre+1 (OmniSep's training image query), clipped to the video."""
    if not frames:
        raise ValueError("no frames")
    centre = len(frames) // 2
    return frames[max(0, centre - radius) : centre + radius + 1]
