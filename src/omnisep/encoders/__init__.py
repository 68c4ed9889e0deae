"""Query encoders: frozen maps from text, images and sounds to one L2-normalised space.

``get_encoder(name, **options)`` is the one way in, so that the name recorded
in a checkpoint is enough to rebuild the encoder it was trained with.
"""

from __future__ import annotations

import os

from omnisep.encoders.base import QueryEncoder
from omnisep.errors import OmniSepError

_ENCODERS = {
    "bundled": (
        384,
        "MiniLM text + EfficientNet-Lite0 image + aisfx audio, joined by trained heads (default; offline; permissive licences)",
    ),
    "imagebind": (1024, "ImageBind huge, the paper's Query-Net (you download the non-commercial weights yourself)"),
    "toy": (64, "deterministic hash/histogram/spectrum encoder for tests (not for real queries)"),
}

DEFAULT_ENCODER = "bundled"
RUNTIME_OPTIONS = ("device", "batch_size")


def list_encoders() -> list[dict]:
    return [{"name": name, "dim": dim, "description": text} for name, (dim, text) in _ENCODERS.items()]


def get_encoder(name: str = DEFAULT_ENCODER, **options) -> QueryEncoder:
    """Build an encoder by name; options go to its constructor (e.g. ``device``, ``weights``, ``heads``, ``dim``).

    Options given as ``None`` are dropped, so a CLI can pass its optional flags through.
    """
    options = {key: value for key, value in options.items() if value is not None}
    if name == "toy":
        from omnisep.encoders.toy import ToyEncoder as kind
    elif name == "bundled":
        from omnisep.encoders.bundled import BundledEncoder as kind
    elif name == "imagebind":
        from omnisep.encoders.imagebind import ImageBindEncoder as kind
    else:
        raise OmniSepError(f"Unknown encoder '{name}': choose one of {', '.join(_ENCODERS)}.")
    try:
        encoder = kind(**options)
    except TypeError as error:  # an option this encoder does not take (a typo in a config)
        raise OmniSepError(f"encoder '{name}' does not accept the options {sorted(options)} ({error}).") from None
    # What rebuilds the same embedding space elsewhere (checkpoints record it): not where or how fast it runs.
    encoder.options = {
        key: (os.fspath(value) if isinstance(value, os.PathLike) else value)
        for key, value in options.items()
        if key not in RUNTIME_OPTIONS
    }
    return encoder


def recorded_encoder(identity: dict) -> QueryEncoder:
    """Rebuild the encoder a checkpoint records (``config["encoder"]``: its name and the options that shape it)."""
    return get_encoder(identity["name"], **(identity.get("options") or {}))


__all__ = ["QueryEncoder", "get_encoder", "recorded_encoder", "list_encoders", "DEFAULT_ENCODER"]
