"""Train the bundled encoder's heads from a manifest (a training step, so it lives above data/ and encoders/).

    omnisep encoders train-heads corpus/manifest.jsonl -o src/omnisep/pretrained/encoder-heads/heads.safetensors

Audio clips and pictures (``image``, or the centre frames of ``video``) of
the training items go through the frozen backbones once; each label text
through MiniLM. Audio is augmented (noise, low-pass, reverb, gain) and images
(flip, crop), because heads trained on clean renders alone break on real
recordings. Items whose ``split`` is ``test`` or ``val`` are held out and
scored with :func:`~omnisep.encoders.heads.retrieval_table`; the scores go into
the heads' JSON record.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.signal import butter, fftconvolve, sosfilt

from omnisep.encoders.heads import (
    HeadConfig,
    build_heads,
    format_retrieval_table,
    heads_from_state,
    retrieval_table,
    save_heads,
    train_heads,
)
from omnisep.errors import OmniSepError

HELD_OUT = ("test", "val", "valid", "validation")
MAX_AUDIO_SECONDS = 10.0


def augment_audio(clip: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """One random degradation of a clip: reverb, low-pass, background noise and gain, each with some probability."""
    out = clip.astype(np.float64)
    if rng.random() < 0.5:  # reverb: exponentially decaying noise tail, RT60 0.2-0.8 s
        rt60 = rng.uniform(0.2, 0.8)
        t = np.arange(int(rt60 * rate)) / rate
        tail = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
        wet = fftconvolve(out, tail / np.sqrt(np.sum(tail**2)))[: out.size]
        out = out + rng.uniform(0.2, 0.6) * wet
    if rng.random() < 0.5:  # band limit, as small speakers and phone recordings do
        cutoff = rng.uniform(2000.0, min(8000.0, 0.45 * rate))
        out = sosfilt(butter(4, cutoff, fs=rate, output="sos"), out)
    if rng.random() < 0.7:  # background noise at 5-30 dB SNR
        power = np.mean(out**2) + 1e-12
        snr = rng.uniform(5.0, 30.0)
        out = out + rng.standard_normal(out.size) * np.sqrt(power / 10 ** (snr / 10))
    out *= rng.uniform(0.3, 1.0) / max(np.max(np.abs(out)), 1e-9)
    return out.astype(np.float32)


def augment_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random horizontal flip and a crop keeping 70-100 % of each side."""
    height, width = image.shape[:2]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    keep = rng.uniform(0.7, 1.0)
    crop_h, crop_w = max(1, int(height * keep)), max(1, int(width * keep))
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    return np.ascontiguousarray(image[top : top + crop_h, left : left + crop_w])


def _features(encoder, items: Sequence, copies: int, rng: np.random.Generator):
    """Backbone features and labels of every item's audio and picture, plus ``copies`` augmented versions."""
    from omnisep.audio import load_audio
    from omnisep.data.cache import item_inputs

    rate = encoder.audio_sample_rate
    audio, audio_labels, image, image_labels = [], [], [], []
    for number, item in enumerate(items):
        if number and number % 100 == 0:
            print(f"  {number}/{len(items)} items", flush=True)
        wave = load_audio(item.audio, sample_rate=rate, mono=True)[0][0][: int(MAX_AUDIO_SECONDS * rate)]
        clips = [wave] + [augment_audio(wave, rate, rng) for _ in range(copies)]
        audio.append(encoder.audio_backbone_features(clips))
        audio_labels.extend([item.label] * len(clips))
        frames = item_inputs(item, "image")
        if frames:
            versions = [frames] + [[augment_image(f, rng) for f in frames] for _ in range(copies)]
            image.extend(encoder.image_backbone_features(version).mean(0, keepdim=True) for version in versions)
            image_labels.extend([item.label] * len(versions))
    return (
        torch.cat(audio) if audio else None,
        audio_labels,
        torch.cat(image) if image else None,
        image_labels,
    )


def train_from_manifest(
    manifest,
    output,
    encoder=None,
    hidden: int = 512,
    epochs: int = 200,
    augment_copies: int = 3,
    seed: int = 0,
    log=print,
) -> dict:
    """Train, evaluate on held-out items, save ``output`` (+ .json); returns the training record."""
    from omnisep.data.manifest import read_manifest
    from omnisep.encoders.bundled import BundledEncoder

    items = read_manifest(manifest)
    encoder = encoder or BundledEncoder(heads=None, allow_untrained_heads=True)
    train_items = [i for i in items if (i.split or "train").lower() not in HELD_OUT]
    test_items = [i for i in items if (i.split or "train").lower() in HELD_OUT]
    if not train_items:
        raise OmniSepError(f"Manifest '{manifest}' has no training items (all are marked test/val).")
    rng = np.random.default_rng(seed)
    log(f"backbone features of {len(train_items)} training items (x{1 + augment_copies} with augmentation)")
    audio, audio_labels, image, image_labels = _features(encoder, train_items, augment_copies, rng)
    labels = sorted({i.label for i in items})
    anchors = dict(zip(labels, encoder.embed_text(labels)))
    features = {"audio": audio}
    row_labels = {"audio": audio_labels}
    if image is not None:
        features["image"], row_labels["image"] = image, image_labels
    log(f"training heads on {len(audio_labels)} audio rows, {len(image_labels)} image rows, {len(labels)} labels")
    state = train_heads(features, row_labels, anchors, hidden=hidden, epochs=epochs, seed=seed)
    heads = heads_from_state(state)
    if "image" not in heads:  # no pictures in the corpus: an untrained image head keeps the encoder complete
        heads.update(build_heads({"image": HeadConfig(1280, encoder.dim, hidden)}, seed))
    record = {
        "manifest": str(manifest),
        "train_items": len(train_items),
        "test_items": len(test_items),
        "labels": len(labels),
        "augment_copies": augment_copies,
        "hidden": hidden,
        "epochs": epochs,
        "seed": seed,
        "image_head_trained": image is not None,
    }
    if test_items:
        test_audio, test_audio_labels, test_image, test_image_labels = _features(encoder, test_items, 0, rng)
        with torch.no_grad():
            text = torch.stack([anchors[label] for label in labels])
            table = retrieval_table(
                heads["audio"](test_audio), test_audio_labels, text, labels,
                heads["image"](test_image) if test_image is not None else None, test_image_labels,
            )
        record["held_out_retrieval"] = table
        log(format_retrieval_table(table))
    save_heads(output, heads, training=record)
    log(f"wrote {output}")
    return record
