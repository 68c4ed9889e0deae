"""The default encoder: small open backbones from PyPI packages, joined by trained heads.

Text goes through MiniLM unchanged (384-d, the anchor space); images
(EfficientNet-Lite0, 1280-d) and sounds (aisfx CNN, 512-d) go through their
frozen backbone and a small projection head trained onto MiniLM embeddings of
label texts (:mod:`omnisep.encoders.heads`). Unlike ImageBind it needs no
manual download and its licences allow commercial use (see docs/encoders.md).
Each backbone is loaded on first use of its modality.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from omnisep.encoders import backbones
from omnisep.encoders.base import QueryEncoder, freeze, sha256_of_tensors
from omnisep.encoders.heads import HeadConfig, build_heads, heads_sha256, load_heads
from omnisep.encoders.weights import cached_file_hash
from omnisep.errors import OmniSepError, describe

DEFAULT_HEADS = Path(__file__).resolve().parent.parent / "pretrained" / "encoder-heads" / "heads.safetensors"
# Shipped heads by version name. v1 is the default (the shipped Separate-Net was trained with it); image head v2
# is opt-in (``get_encoder("bundled", heads="v2")``): better on held-out picture styles, worse on Twemoji with the
# current checkpoints (docs/encoders.md, "Heads versions").
SHIPPED_HEADS = {"v1": DEFAULT_HEADS, "v2": DEFAULT_HEADS.parent / "v2" / "heads.safetensors"}
TEXT_DIM = 384
BACKBONE_DIMS = {"image": 1280, "audio": 512}


class BundledEncoder(QueryEncoder):
    name = "bundled"
    version = "1"
    dim = TEXT_DIM
    audio_sample_rate = backbones.SFX_SAMPLE_RATE

    def __init__(
        self,
        heads: str | os.PathLike | None = DEFAULT_HEADS,
        allow_untrained_heads: bool = False,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        backbones_dir: str | os.PathLike | None = None,
    ):
        """``heads``: a heads file or a shipped version name (``"v1"``, the default, or ``"v2"``).

        ``heads=None`` with ``allow_untrained_heads=True`` gives seeded random heads (tests, head training).
        """
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self._backbones_dir = backbones_dir
        if heads is None:
            if not allow_untrained_heads:
                raise OmniSepError("The bundled encoder needs trained heads: pass a heads file, or allow untrained heads for tests.")
            self.heads = build_heads({m: HeadConfig(d, TEXT_DIM, 512) for m, d in BACKBONE_DIMS.items()}).eval()
            self.heads_info = {"untrained": True}
        else:
            heads = SHIPPED_HEADS.get(os.fspath(heads), Path(heads))
            if not heads.is_file():
                raise OmniSepError(
                    f"The bundled encoder's trained heads {describe(heads)} are missing: train them "
                    "(docs/encoders.md, 'Training the heads') or use --encoder imagebind."
                )
            self.heads, self.heads_info = load_heads(heads)
            missing = set(BACKBONE_DIMS) - set(self.heads)
            if missing:
                raise OmniSepError(f"Encoder heads {describe(heads)} have no head for {', '.join(sorted(missing))}.")
        freeze(self.heads.to(self.device))
        self._text_model = None
        self._image_model = None
        self._audio_model = None
        self._hash = None
        # Optional {key: features} memo. Building the default model embeds the
        # same clips and pictures twice (head training, then the cache); with a
        # memo the slow backbones run once per distinct input.
        self.feature_memo: dict | None = None

    def with_heads(self, heads: str | os.PathLike) -> "BundledEncoder":
        """The same backbones (loaded ones and the feature memo shared, not copied) with other heads.

        Training heads and then embedding with them runs the slow backbones once.
        """
        other = BundledEncoder(heads, device=self.device, batch_size=self.batch_size, backbones_dir=self._backbones_dir)
        other._text_model, other._image_model, other._audio_model = self._text_model, self._image_model, self._audio_model
        other.feature_memo = self.feature_memo
        return other

    # -- lazily loaded backbones -----------------------------------------------------------

    def _converted(self):
        return backbones.backbones_index(self._backbones_dir)

    @property
    def text_model(self):
        if self._text_model is None:
            self._text_model = backbones.load_minilm(self.device)
        return self._text_model

    @property
    def image_model(self):
        if self._image_model is None:
            self._image_model = backbones.load_efficientnet(*self._converted()).to(self.device)
        return self._image_model

    @property
    def audio_model(self):
        if self._audio_model is None:
            self._audio_model = backbones.load_sfx_cnn().to(self.device)
        return self._audio_model

    # -- identity ----------------------------------------------------------------------------

    def _backbone_hashes(self) -> list[str]:
        from safetensors.torch import load_file

        minilm = backbones.minilm_path() / "model.safetensors"
        return [
            cached_file_hash(minilm, lambda: sha256_of_tensors(load_file(str(minilm))).hexdigest(), tag="tensors"),
            *(sha for _, sha in sorted(backbones.backbone_hashes(self._converted()[1]).items())),
        ]

    def weights_hash(self) -> str:
        """sha256 over MiniLM's, both converted backbones' and the heads' tensors."""
        if self._hash is None:
            self._hash = _combined_hash(self._backbone_hashes(), heads_sha256(self.heads))
        return self._hash

    @property
    def heads_version(self) -> int:
        return int(self.heads_info.get("heads_version", 1))

    def compatible_hashes(self) -> list[str]:
        """``weights_hash`` of the earlier heads versions these heads may stand in for.

        A version listed under ``supersedes`` in heads.json counts only if the
        heads it names as unchanged (text is MiniLM itself, so at least audio)
        hash the same here: then its text and audio embeddings are
        bit-identical to ours and only heads trained into the same anchor
        space differ. Its hash is rebuilt from the backbones and its recorded
        heads hash, exactly as :meth:`weights_hash` builds ours.
        """
        found = []
        for entry in self.heads_info.get("supersedes", ()):
            unchanged = entry.get("unchanged", {})
            if "audio" not in unchanged or any(
                m not in self.heads or heads_sha256(self.heads, [m]) != sha for m, sha in unchanged.items()
            ):
                continue
            found.append(_combined_hash(self._backbone_hashes(), entry["heads_sha256"]))
        return found

    def identity(self) -> dict:
        identity = super().identity()
        identity["heads_version"] = self.heads_version
        compatible = self.compatible_hashes()
        if compatible:
            identity["compatible_hashes"] = compatible
        return identity

    # -- backbone features (what the heads are trained on) ------------------------------------

    def image_backbone_features(self, images: list[np.ndarray]) -> torch.Tensor:
        """``[N, 1280]`` EfficientNet-Lite0 features of RGB uint8 arrays (no head, not normalised)."""
        return self._memoized("image", images,
                              lambda batch: backbones.pictures_to_features(self.image_model, batch, device=self.device))

    def audio_backbone_features(self, clips: list[np.ndarray]) -> torch.Tensor:
        """``[N, 512]`` aisfx features of mono 44.1 kHz clips (no head, not normalised)."""
        def compute(batch):
            with torch.no_grad():
                return torch.stack([backbones.sfx_embedding(self.audio_model, clip) for clip in batch])

        return self._memoized("audio", clips, compute)

    def _memoized(self, modality: str, arrays: list[np.ndarray], compute) -> torch.Tensor:
        if self.feature_memo is None:
            return compute(arrays)
        keys = [_array_key(modality, array) for array in arrays]
        missing = [i for i, key in enumerate(keys) if key not in self.feature_memo]
        if missing:
            for i, row in zip(missing, compute([arrays[i] for i in missing])):
                self.feature_memo[keys[i]] = row
        return torch.stack([self.feature_memo[key] for key in keys])

    # -- QueryEncoder ------------------------------------------------------------------------

    def _embed_text(self, texts: list[str]) -> torch.Tensor:
        return self.text_model.embed(texts, batch_size=self.batch_size)

    def _embed_image(self, images: list[np.ndarray]) -> torch.Tensor:
        return self.heads["image"](self.image_backbone_features(images))

    def _embed_audio(self, clips: list[np.ndarray]) -> torch.Tensor:
        return self.heads["audio"](self.audio_backbone_features(clips).to(self.device))

    def prepare_example(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        """Near-silence trimmed and a short example looped to one aisfx block (omnisep.encoders.examples)."""
        from omnisep.encoders.examples import prepare_example

        return prepare_example(wave, sample_rate)


def _combined_hash(backbone_hashes: list[str], heads_hash: str) -> str:
    return hashlib.sha256("|".join([*backbone_hashes, heads_hash]).encode()).hexdigest()


def _array_key(modality: str, array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(array.tobytes(), digest_size=16)
    digest.update(f"{modality}|{array.dtype}|{array.shape}".encode())
    return digest.hexdigest()
