"""Strong picture augmentation: crops, colour, greyscale, blur, edge and sketch renderings, backgrounds.

The image head must not learn one artist's palette or line weight; each
training copy of a picture gets a random mix of these (Pillow only). The
same functions render the "sketch" test style.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from omnisep.querynet.pictures import flatten


def sketch(rgb: np.ndarray) -> np.ndarray:
    """A pencil-sketch rendering: dark edges of the greyscale picture on white."""
    grey = Image.fromarray(rgb).convert("L").filter(ImageFilter.SMOOTH)
    edges = ImageOps.invert(grey.filter(ImageFilter.FIND_EDGES))
    edges = ImageOps.autocontrast(edges, cutoff=2)
    return np.asarray(edges.convert("RGB"), dtype=np.uint8)


def contour(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L").filter(ImageFilter.CONTOUR).convert("RGB"), dtype=np.uint8)


def augment_picture(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random strong augmentation of an RGBA picture -> RGB uint8."""
    background = (255, 255, 255)
    roll = rng.random()
    if roll < 0.25:  # a random plain colour behind the picture
        background = tuple(int(v) for v in rng.integers(0, 256, 3))
    elif roll < 0.35:  # a noisy, textured background
        noise = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        texture = np.asarray(Image.fromarray(noise).resize(rgba.shape[1::-1], Image.BICUBIC), dtype=np.float32)
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        rgb = (rgba[..., :3] * alpha + texture * (1 - alpha)).astype(np.uint8)
    if roll >= 0.35 or roll < 0.25:
        rgb = flatten(rgba, background)
    image = Image.fromarray(rgb)
    # random resized crop: 45-100 % of the area, aspect 3:4..4:3
    width, height = image.size
    area = width * height * rng.uniform(0.45, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w = int(min(width, round(np.sqrt(area * aspect))))
    h = int(min(height, round(np.sqrt(area / aspect))))
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    image = image.crop((left, top, left + w, top + h)).resize((224, 224), Image.BICUBIC)
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    if rng.random() < 0.3:
        image = image.rotate(float(rng.uniform(-20, 20)), resample=Image.BICUBIC, fillcolor=background)
    if rng.random() < 0.8:  # colour jitter
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.6, 1.4))
        image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.6, 1.4))
        image = ImageEnhance.Color(image).enhance(rng.uniform(0.3, 1.7))
    if rng.random() < 0.2:  # hue rotation
        hsv = np.asarray(image.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(int) + int(rng.integers(0, 256))) % 256
        image = Image.fromarray(hsv, "HSV").convert("RGB")
    style = rng.random()
    if style < 0.15:
        image = Image.fromarray(sketch(np.asarray(image)))
    elif style < 0.22:
        image = Image.fromarray(contour(np.asarray(image)))
    elif style < 0.37:
        image = ImageOps.grayscale(image).convert("RGB")
    elif style < 0.45:
        image = ImageOps.posterize(image, int(rng.integers(2, 4)))
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5))))
    if rng.random() < 0.15:  # low-quality JPEG, as pictures pulled from the web are
        import io

        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(10, 40)))
        buffer.seek(0)
        image = Image.open(buffer).convert("RGB")
    return np.asarray(image, dtype=np.uint8)
