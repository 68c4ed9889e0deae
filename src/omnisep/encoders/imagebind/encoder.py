"""ImageBind as an omnisep query encoder: the paper's Query-Net (1024-d, frozen)."""

from __future__ import annotations

import os

import numpy as np
import torch

from omnisep.encoders.base import QueryEncoder, freeze, sha256_of_tensors
from omnisep.encoders.imagebind.config import HUGE, ImageBindConfig
from omnisep.encoders.imagebind.loader import default_weights_path, load_imagebind
from omnisep.encoders.imagebind.model import ImageBindModel
from omnisep.encoders.imagebind.preprocess import audio_to_fbank_clips, image_to_pixels
from omnisep.encoders.imagebind.tokenizer import ClipTokenizer
from omnisep.encoders.weights import cached_file_hash
from omnisep.errors import OmniSepError

HOW_TO_GET_WEIGHTS = (
    "download imagebind_huge.pth yourself (CC BY-NC-SA 4.0, non-commercial use only; see docs/encoders.md), "
    "then pass --imagebind-weights PATH or put it in $OMNISEP_CACHE/imagebind_huge.pth"
)


class ImageBindEncoder(QueryEncoder):
    name = "imagebind"
    audio_sample_rate = 16000
    # One ImageBind audio clip is 2 s: shorter queries are zero-padded in the filterbank.
    full_audio_seconds = 2.0

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        model: ImageBindModel | None = None,
        config: ImageBindConfig = HUGE,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        vocab_path: str | os.PathLike | None = None,
    ):
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.weights_path = None
        if model is None:
            path = weights if weights is not None else default_weights_path()
            if path is None:
                raise OmniSepError(f"ImageBind weights were not found: {HOW_TO_GET_WEIGHTS}.")
            self.weights_path = os.fspath(path)
            model = load_imagebind(path, config=config, device=self.device)
        else:
            config = model.config
            model = freeze(model.to(self.device))
        self.model = model
        self.config = config
        self.version = config.name
        self.dim = config.out_embed_dim
        self.tokenizer = ClipTokenizer(vocab_path, context_length=config.context_length)
        self._hash = None

    def weights_hash(self) -> str:
        if self._hash is None:
            compute = lambda: sha256_of_tensors(self.model.state_dict()).hexdigest()  # noqa: E731
            if self.weights_path is not None:
                # Hashing 4 GB takes a while: remember it per file (same tensors -> same hash for .pth and .safetensors).
                self._hash = cached_file_hash(self.weights_path, compute, tag="imagebind-tensors")
            else:
                self._hash = compute()
        return self._hash

    def _embed_text(self, texts: list[str]) -> torch.Tensor:
        return self.model.embed_text(self.tokenizer(texts).to(self.device))

    def _embed_image(self, images: list[np.ndarray]) -> torch.Tensor:
        pixels = torch.stack([image_to_pixels(image, self.config.image_size) for image in images])
        return self.model.embed_vision(pixels.to(self.device))

    def _embed_audio(self, clips: list[np.ndarray]) -> torch.Tensor:
        fbanks = torch.stack([audio_to_fbank_clips(clip) for clip in clips])
        return self.model.embed_audio(fbanks.to(self.device))
