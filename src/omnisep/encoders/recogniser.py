"""The picture recogniser: which class does a picture show? (picture Query-Aug)

A picture query is snapped to its label's row of the checkpoint's bank, so the
vector that recognises it never reaches the Separate-Net; it need not come from
the heads the model was trained with. That frees it to be better than an image
head may be: EfficientNet-Lite2's features beside Lite0's (two ImageNet
backbones see a drawing differently), Lite2's own ImageNet classifier as the
zero-shot bridge, and a few heads trained with different seeds averaged (one
head's seed alone moves a held-out style's top-1 by up to 0.16).
docs/encoders.md, "The picture recogniser", has the measurements.

Trained by ``python -m omnisep.querynet.image_head --recogniser PATH``; shipped
as ``pretrained/picture-recogniser/recogniser.safetensors`` + ``.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnisep.errors import OmniSepError, describe

RECOGNISER_FORMAT = "omnisep-picture-recogniser"
DEFAULT_RECOGNISER = Path(__file__).resolve().parent.parent / "pretrained" / "picture-recogniser" / "recogniser.safetensors"
LITE2_DIM = 1280  # the features are [Lite2 (1280), Lite0 (1280)]; the bridge reads the Lite2 part


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class PictureRecogniser(nn.Module):
    """``K`` image heads on ``[Lite2, Lite0]`` features sharing one zero-shot bridge; their normalised outputs averaged.

    Each head's output is ``(1 - w) normalize(mlp_k(x)) + w normalize(bridge(x))``, as in
    :class:`omnisep.encoders.heads.ProjectionHead`; the bridge is ``softmax(lite2_logits / T) @ names``.
    """

    def __init__(self, heads: int, in_dim: int = 2 * LITE2_DIM, hidden: int = 512, out_dim: int = 384, classes: int = 1000,
                 bridge_weight: float = 0.0, bridge_temperature: float = 1.0):
        super().__init__()
        self.mlps = nn.ModuleList(_mlp(in_dim, hidden, out_dim) for _ in range(heads))
        self.register_buffer("classifier_weight", torch.zeros(classes, LITE2_DIM, dtype=torch.float16))
        self.register_buffer("classifier_bias", torch.zeros(classes, dtype=torch.float16))
        self.register_buffer("name_anchors", torch.zeros(classes, out_dim, dtype=torch.float16))
        self.bridge_weight, self.bridge_temperature = float(bridge_weight), float(bridge_temperature)
        self.encoder = None  # the bundled encoder whose Lite0 (and feature memo) it shares, set by `attach`
        self._lite2 = None

    # -- from features ------------------------------------------------------------------

    def bridge(self, features: torch.Tensor) -> torch.Tensor:
        logits = features[:, :LITE2_DIM] @ self.classifier_weight.float().T + self.classifier_bias.float()
        return torch.softmax(logits / self.bridge_temperature, dim=-1) @ self.name_anchors.float()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, 2560]`` features -> ``[N, 384]`` unit vectors in the anchor (text) space."""
        features = features.float()
        bridge = F.normalize(self.bridge(features), dim=-1)
        total = 0
        for mlp in self.mlps:
            head = (1.0 - self.bridge_weight) * F.normalize(mlp(features), dim=-1) + self.bridge_weight * bridge
            total = total + F.normalize(head, dim=-1)
        return F.normalize(total, dim=-1)

    # -- from pictures ------------------------------------------------------------------

    def attach(self, encoder) -> "PictureRecogniser":
        """Use ``encoder``'s Lite0 and feature memo (a :class:`~omnisep.encoders.bundled.BundledEncoder`)."""
        self.encoder = encoder
        return self

    def features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """``[N, 2560]``: Lite2's features of RGB uint8 arrays beside the encoder's Lite0 features."""
        from omnisep.encoders import backbones

        if self._lite2 is None:
            self._lite2 = backbones.load_efficientnet_lite2()
        lite2 = backbones.pictures_to_features(self._lite2, images, backbones.LITE_VARIANTS["lite2"][2])
        return torch.cat([lite2, self.encoder.image_backbone_features(list(images)).float()], dim=1)

    def embed(self, modality: str, items: Sequence, sample_rate: int | None = None) -> torch.Tensor:
        """The encoder's ``embed`` for pictures (paths or arrays), so the API can recognise with it."""
        if modality != "image":
            raise OmniSepError(f"The picture recogniser recognises pictures, not {modality}.")
        if self.encoder is None:
            from omnisep.encoders.bundled import BundledEncoder

            self.attach(BundledEncoder())
        images = self.encoder._prepare_image(items, sample_rate)
        with torch.no_grad():
            return self(self.features(images))

    def embed_image(self, images: Sequence) -> torch.Tensor:
        return self.embed("image", images)

    # -- storage -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, record: dict | None = None) -> Path:
        from omnisep.encoders.weights import save_safetensors_atomic, write_json_atomic

        path = Path(path)
        tensors = {k: v.half().contiguous() for k, v in self.state_dict().items()}
        save_safetensors_atomic(tensors, path, {"format": RECOGNISER_FORMAT})
        first = self.mlps[0]
        write_json_atomic(path.with_suffix(".json"), {
            "format": RECOGNISER_FORMAT, "heads": len(self.mlps), "in_dim": first[0].in_features,
            "hidden": first[0].out_features, "out_dim": first[2].out_features, "classes": int(self.classifier_bias.shape[0]),
            "bridge_weight": self.bridge_weight, "bridge_temperature": self.bridge_temperature, "record": record or {},
        })
        return path

    @classmethod
    def load(cls, path: str | os.PathLike = DEFAULT_RECOGNISER, encoder=None) -> "PictureRecogniser":
        from safetensors.torch import load_file

        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            if meta.get("format") != RECOGNISER_FORMAT:
                raise ValueError("not a picture recogniser")
            model = cls(meta["heads"], meta["in_dim"], meta["hidden"], meta["out_dim"], meta["classes"],
                        meta["bridge_weight"], meta["bridge_temperature"])
            state = load_file(str(path))
            model.load_state_dict({k: (v if k in ("classifier_weight", "classifier_bias", "name_anchors") else v.float())
                                   for k, v in state.items()}, strict=True)
        except Exception as error:  # safetensors raises its own types for a damaged file
            raise OmniSepError(f"Picture recogniser {describe(path)} is missing or damaged ({type(error).__name__}).") from None
        model.record = meta.get("record", {})
        return model.eval().attach(encoder) if encoder is not None else model.eval()

    @staticmethod
    def is_recogniser(path: str | os.PathLike) -> bool:
        """Whether ``path`` is a recogniser file (its JSON says so), not a heads file."""
        try:
            return json.loads(Path(path).with_suffix(".json").read_text(encoding="utf-8")).get("format") == RECOGNISER_FORMAT
        except (OSError, ValueError, AttributeError):
            return False


def from_head_states(states: Sequence[dict], classifier: tuple[torch.Tensor, torch.Tensor], name_anchors: torch.Tensor,
                     bridge_weight: float, bridge_temperature: float) -> PictureRecogniser:
    """A recogniser from image-head training states (``image.layers.*``, as ``train_heads`` returns them)."""
    first = states[0]["image.layers.0.weight"]
    model = PictureRecogniser(len(states), first.shape[1], first.shape[0], states[0]["image.layers.2.weight"].shape[0],
                              len(classifier[1]), bridge_weight, bridge_temperature)
    for mlp, state in zip(model.mlps, states):
        mlp.load_state_dict({k[len("image.layers."):]: v for k, v in state.items() if k.startswith("image.layers.")}, strict=True)
    model.classifier_weight.copy_(classifier[0].half())
    model.classifier_bias.copy_(classifier[1].half())
    model.name_anchors.copy_(name_anchors.half())
    return model.eval()

