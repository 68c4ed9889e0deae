"""The contract every query encoder keeps (see docs/ARCHITECTURE.md).

Subclasses implement only the ``_embed_<modality>`` methods (one per entry of
:mod:`omnisep.modalities`) on clean, validated, batched input; this base class owns what must be identical across encoders:
input checks with one-sentence errors, path decoding, resampling, batching,
``no_grad``, L2 normalisation, float32 on CPU, and the identity a checkpoint
records so that embeddings from another encoder are refused.
"""

from __future__ import annotations

import abc
import hashlib
import os
import warnings
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from omnisep.errors import OmniSepError, describe


def sha256_of_tensors(tensors: dict[str, torch.Tensor], digest=None) -> "hashlib._Hash":
    """Hash names, dtypes, shapes and values in sorted-name order.

    Independent of the file format and of key order, so a ``.pth`` and its
    ``.safetensors`` conversion hash the same.
    """
    digest = digest or hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()) if tensor.numel() else b"")
    return digest


class QueryEncoder(abc.ABC):
    """A frozen encoder of text, image and audio queries into one shared space.

    Attributes set by subclasses: ``name``, ``version``, ``dim``,
    ``audio_sample_rate`` (what ``_embed_audio`` receives), and the audio
    length policy: clips shorter than ``min_audio_seconds`` are refused,
    clips shorter than ``full_audio_seconds`` are padded by the encoder's own
    front end with a warning (their embedding is less reliable).
    """

    name: str
    version: str
    dim: int
    audio_sample_rate: int = 16000
    min_audio_seconds: float = 0.1
    full_audio_seconds: float = 1.0
    batch_size: int = 32
    device: torch.device = torch.device("cpu")

    # -- what subclasses implement ------------------------------------------------------

    @abc.abstractmethod
    def weights_hash(self) -> str:
        """sha256 (hex) over everything that determines the embeddings."""

    @abc.abstractmethod
    def _embed_text(self, texts: list[str]) -> torch.Tensor:
        """Raw (unnormalised) embeddings ``[N, dim]`` of cleaned, non-empty texts."""

    @abc.abstractmethod
    def _embed_image(self, images: list[np.ndarray]) -> torch.Tensor:
        """Raw embeddings of ``H x W x 3`` uint8 RGB arrays."""

    @abc.abstractmethod
    def _embed_audio(self, clips: list[np.ndarray]) -> torch.Tensor:
        """Raw embeddings of mono float32 clips at ``audio_sample_rate``."""

    # -- public API ----------------------------------------------------------------------

    options: dict = {}  # set by get_encoder: the constructor options that shape the embedding space

    def identity(self) -> dict:
        """What a checkpoint records; ``options`` (only when given) lets ``get_encoder`` rebuild this encoder."""
        identity = {"name": self.name, "version": self.version, "weights_hash": self.weights_hash(), "dim": int(self.dim)}
        if self.options:
            identity["options"] = dict(self.options)
        return identity

    def embed(self, modality: str, items: Sequence, sample_rate: int | None = None) -> torch.Tensor:
        """Embed a batch of one modality's items into ``[N, dim]``, L2-normalised, float32 on CPU.

        Items: texts (``"text"``); ``H x W x 3`` uint8 arrays or image paths
        (``"image"``); mono float clips at ``sample_rate``, or audio paths
        (``"audio"``). Each modality's input checks live in ``_prepare_<name>``
        and the encoder's own model in ``_embed_<name>`` (see omnisep.modalities).
        """
        from omnisep.modalities import check

        (name,) = check([modality])
        prepared = getattr(self, f"_prepare_{name}")(items, sample_rate)
        return self._batched(getattr(self, f"_embed_{name}"), prepared)

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.embed("text", texts)

    def embed_image(self, images: Sequence) -> torch.Tensor:
        return self.embed("image", images)

    def embed_audio(self, clips: Sequence, sample_rate: int | None = None) -> torch.Tensor:
        """Embed mono clips given at ``sample_rate`` (or paths, decoded and downmixed)."""
        return self.embed("audio", clips, sample_rate)

    def embed_examples(self, clips: Sequence, sample_rate: int | None = None) -> torch.Tensor:
        """Users' audio query examples: as :meth:`embed_audio`, each clip made ready by :meth:`prepare_example`
        after it is decoded, mixed to mono and resampled to ``audio_sample_rate``."""
        if getattr(self.prepare_example, "__func__", None) is QueryEncoder.prepare_example:  # nothing to prepare
            return self.embed("audio", clips, sample_rate)
        with warnings.catch_warnings():
            # "padded, less reliable" is not true of an example the encoder fills itself (a short one looped)
            warnings.filterwarnings("ignore", message=r".* s long \(under .*: it is padded")
            decoded = self._prepare_audio(clips, sample_rate)
        prepared = [self.prepare_example(clip, self.audio_sample_rate) for clip in decoded]
        return self._batched(self._embed_audio, prepared)

    def prepare_example(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        """How this encoder wants a user's example (default: as it is; see omnisep.encoders.examples)."""
        return wave

    # -- input checks per modality (shared by every encoder) ---------------------------

    def _prepare_text(self, texts: Sequence[str], sample_rate: int | None) -> list[str]:
        texts = _as_list(texts, str)
        cleaned = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise OmniSepError(f"Text query #{index + 1} must be a string, got {type(text).__name__}.")
            text = " ".join(text.split())
            if not text:
                raise OmniSepError(f"Text query #{index + 1} is empty: describe the sound to separate.")
            check_text(text, f"Text query #{index + 1}")
            cleaned.append(text)
        return cleaned

    def _prepare_image(self, images: Sequence, sample_rate: int | None) -> list[np.ndarray]:
        from omnisep.images import load_image

        images = _as_list(images, (str, os.PathLike, np.ndarray))
        return [load_image(image, source=f"Image query #{i + 1}") for i, image in enumerate(images)]

    def _prepare_audio(self, clips: Sequence, sample_rate: int | None) -> list[np.ndarray]:
        from omnisep.audio import load_audio, resample

        clips = _as_list(clips, (str, os.PathLike, np.ndarray, torch.Tensor))
        prepared = []
        for index, clip in enumerate(clips):
            if isinstance(clip, (str, os.PathLike)):
                audio, _ = load_audio(clip, sample_rate=self.audio_sample_rate, mono=True)
                source = f"Audio query {describe(clip)}"
                audio = audio[0]
            else:
                source = f"Audio query #{index + 1}"
                if sample_rate is None:
                    raise OmniSepError(f"{source} is an array: pass its sample_rate too.")
                audio = _mono_array(clip, source)
                if int(sample_rate) != self.audio_sample_rate:
                    audio = resample(audio, int(sample_rate), self.audio_sample_rate)
            prepared.append(self._check_audio_length(audio, source))
        return prepared

    def check_embedding(self, vector, source: str) -> torch.Tensor:
        """Validate a precomputed embedding from elsewhere (a file, a cache) against this encoder."""
        if isinstance(vector, torch.Tensor):
            tensor = vector.detach().to("cpu", torch.float32).reshape(-1)
        else:
            tensor = torch.from_numpy(np.asarray(vector, dtype=np.float32).reshape(-1))
        if tensor.numel() != self.dim:
            raise OmniSepError(
                f"{source} has {tensor.numel()} values but the '{self.name}' encoder makes {self.dim}-d embeddings."
            )
        if not torch.isfinite(tensor).all() or float(tensor.norm()) == 0.0:
            raise OmniSepError(f"{source} is not a usable embedding (zero, NaN or infinite values).")
        return F.normalize(tensor, dim=0)

    # -- shared machinery ----------------------------------------------------------------

    def _check_audio_length(self, audio: np.ndarray, source: str) -> np.ndarray:
        if not np.isfinite(audio).all():
            raise OmniSepError(f"{source} contains NaN or infinite samples.")
        seconds = audio.shape[-1] / self.audio_sample_rate
        if seconds < self.min_audio_seconds:
            raise OmniSepError(
                f"{source} is {seconds:.3f} s long; audio queries need at least {self.min_audio_seconds:g} s."
            )
        if seconds < self.full_audio_seconds:
            warnings.warn(
                f"{source} is only {seconds:.2f} s long (under {self.full_audio_seconds:g} s): "
                "it is padded, and its embedding is less reliable.",
                stacklevel=4,  # the caller of embed()
            )
        return audio

    def _batched(self, function, items: list) -> torch.Tensor:
        if not items:
            return torch.zeros(0, self.dim, dtype=torch.float32)
        outputs = []
        with torch.no_grad():
            for start in range(0, len(items), self.batch_size):
                out = function(items[start : start + self.batch_size])
                outputs.append(out.detach().to("cpu", torch.float32))
        embeddings = torch.cat(outputs)
        if embeddings.shape != (len(items), self.dim):
            raise RuntimeError(f"{self.name} encoder returned {tuple(embeddings.shape)}, expected ({len(items)}, {self.dim})")
        return F.normalize(embeddings, dim=-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, dim={self.dim})"


# Text encoders read a few hundred tokens at most (MiniLM 256, ImageBind 77); a query is a phrase.
LONG_TEXT_CHARACTERS = 300


def check_text(text: str, source: str) -> None:
    """Refuse text that is not valid Unicode; warn about text far longer than a text encoder reads."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start : error.end]
        raise OmniSepError(
            f"{source} contains {bad!r}, which is not a valid Unicode character (bytes that are not UTF-8?); "
            "retype the text."
        ) from None
    if len(text) > LONG_TEXT_CHARACTERS:
        warnings.warn(
            f"{source} is {len(text)} characters long; text encoders read only the first few hundred tokens "
            "of a query, so the rest is ignored (describe the sound in a short phrase).",
            stacklevel=4,
        )


def _as_list(items, kinds) -> list:
    # A lone string or array is one query, not a sequence of characters/rows.
    if isinstance(items, kinds) and not isinstance(items, (list, tuple)):
        return [items]
    if isinstance(items, Iterable):
        return list(items)
    return [items]


def _mono_array(clip, source: str) -> np.ndarray:
    from omnisep.audio import float_samples

    audio = float_samples(clip, source)  # integers scaled by their range, as for mixtures
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if audio.ndim != 1:
        raise OmniSepError(f"{source} must be a mono 1-D array, got shape {tuple(audio.shape)}.")
    return np.ascontiguousarray(audio, dtype=np.float32)


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no gradients: encoders are never trained through."""
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


IDENTITY_FIELDS = ("name", "version", "weights_hash", "dim")
# Recorded when an encoder offers them; absent in identities written before heads were versioned.
OPTIONAL_IDENTITY_FIELDS = ("heads_version", "compatible_hashes")


def identities_compatible(recorded: dict, current: dict) -> bool:
    """May embeddings of ``current`` stand in for those of ``recorded`` (a checkpoint's or a cache's encoder)?

    Yes when name, version and dim agree and either the weights are the same,
    or one side lists the other's ``weights_hash`` under ``compatible_hashes``:
    a new heads version whose text and audio embeddings are bit-identical to
    an older one and whose changed heads were trained into the same text
    anchor space (docs/encoders.md, "Heads versions").
    """
    if any(str(recorded.get(key)) != str(current.get(key)) for key in ("name", "version", "dim")):
        return False
    old, new = recorded.get("weights_hash"), current.get("weights_hash")
    return old == new or old in (current.get("compatible_hashes") or ()) or new in (recorded.get("compatible_hashes") or ())
