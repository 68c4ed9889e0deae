"""Projection heads that bring image and audio backbone features into the text space.

The bundled encoder's text side (MiniLM) is frozen and is the anchor: a head
is trained so that the projection of a clip's (or picture's) features lands
next to the MiniLM embedding of its label text. The loss is InfoNCE over the
label set: cross-entropy of cosine similarities to every label's anchor,
divided by a temperature. Contrasting against labels rather than against the
other items of a batch means two clips of the same class are never pushed
apart as false negatives.

Training runs on precomputed backbone features (the backbones are frozen), so
it takes seconds to minutes on a CPU.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from omnisep.encoders.weights import save_safetensors_atomic, write_json_atomic
from omnisep.errors import OmniSepError, describe

HEADS_FORMAT = "omnisep-encoder-heads"
HEADS_FORMAT_VERSION = 1
# heads.json's "heads_version" (absent: 1). Version 2 retrains only the image head into the
# same anchor space and lists version 1 under "supersedes" (docs/encoders.md, "Heads versions").


@dataclass(frozen=True)
class HeadConfig:
    in_dim: int
    out_dim: int = 384
    hidden: int = 512  # 0: a single linear map
    # Zero-shot bridge (image heads v2): the backbone's own classifier over `bridge` classes,
    # whose class names are embedded in the anchor space; 0 = no bridge.
    bridge: int = 0
    bridge_temperature: float = 1.0
    bridge_weight: float = 0.0


class ProjectionHead(nn.Module):
    """A linear map or a one-hidden-layer MLP, optionally mixed with a zero-shot bridge.

    The bridge turns the backbone's own classifier (e.g. EfficientNet's
    ImageNet-1k logits) into an anchor-space vector without paired data:
    ``softmax(logits / T) @ E``, where row ``c`` of ``E`` is the anchor (text)
    embedding of class ``c``'s name. The output is
    ``(1 - w) normalize(mlp(x)) + w normalize(bridge(x))``. Bridge tensors are
    stored in float16 (they are large and need no more).
    """

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        if config.hidden:
            self.layers = nn.Sequential(
                nn.Linear(config.in_dim, config.hidden), nn.GELU(), nn.Linear(config.hidden, config.out_dim)
            )
        else:
            self.layers = nn.Sequential(nn.Linear(config.in_dim, config.out_dim))
        if config.bridge:
            self.register_buffer("bridge_weight", torch.zeros(config.bridge, config.in_dim, dtype=torch.float16))
            self.register_buffer("bridge_bias", torch.zeros(config.bridge, dtype=torch.float16))
            self.register_buffer("bridge_anchors", torch.zeros(config.bridge, config.out_dim, dtype=torch.float16))

    def bridge(self, features: torch.Tensor) -> torch.Tensor:
        logits = features @ self.bridge_weight.float().T + self.bridge_bias.float()
        return torch.softmax(logits / self.config.bridge_temperature, dim=-1) @ self.bridge_anchors.float()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.layers(features)
        if not self.config.bridge:
            return out
        w = self.config.bridge_weight
        return (1.0 - w) * F.normalize(out, dim=-1) + w * F.normalize(self.bridge(features), dim=-1)


def build_heads(configs: Mapping[str, HeadConfig], seed: int = 0) -> nn.ModuleDict:
    """Heads with a seeded initialisation, so untrained heads are reproducible too."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return nn.ModuleDict({modality: ProjectionHead(config) for modality, config in configs.items()})
    finally:
        torch.random.set_rng_state(state)


def heads_json_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def heads_sha256(heads: Mapping[str, nn.Module], modalities: Sequence[str] | None = None) -> str:
    """sha256 over the heads' tensors (all heads, or those of ``modalities``): what identities hash."""
    from omnisep.encoders.base import sha256_of_tensors

    chosen = heads.keys() if modalities is None else modalities
    return sha256_of_tensors({f"{m}.{k}": v for m in chosen for k, v in heads[m].state_dict().items()}).hexdigest()


def save_heads(
    path: str | os.PathLike,
    heads: nn.ModuleDict,
    training: dict | None = None,
    heads_version: int = 1,
    supersedes: Sequence[dict] = (),
) -> Path:
    """``heads.safetensors`` + ``heads.json`` (configs and training record), both written atomically.

    ``supersedes``: earlier heads versions this one may stand in for, each
    ``{"heads_version", "heads_sha256" (all its heads), "unchanged": {modality: sha256}}``
    (see :meth:`omnisep.encoders.bundled.BundledEncoder.identity`).
    """
    path = Path(path)
    tensors = {f"{modality}.{name}": tensor for modality, head in heads.items() for name, tensor in head.state_dict().items()}
    save_safetensors_atomic(tensors, path, {"format": HEADS_FORMAT})
    description = {
        "format": HEADS_FORMAT,
        "format_version": HEADS_FORMAT_VERSION,
        "heads_version": int(heads_version),
        "heads": {modality: asdict(head.config) for modality, head in heads.items()},
        "modality_sha256": {modality: heads_sha256(heads, [modality]) for modality in heads},
        "supersedes": list(supersedes),
        "training": training or {},
    }
    write_json_atomic(heads_json_path(path), description)
    return path


def load_heads(path: str | os.PathLike) -> tuple[nn.ModuleDict, dict]:
    path = Path(path)
    json_path = heads_json_path(path)
    if not path.is_file() or not json_path.is_file():
        raise OmniSepError(f"Encoder heads {describe(path)} (with {json_path.name} beside it) do not exist.")
    try:
        description = json.loads(json_path.read_text(encoding="utf-8"))
        if description.get("format") != HEADS_FORMAT:
            raise ValueError("format")
        configs = {modality: HeadConfig(**values) for modality, values in description["heads"].items()}
        heads = build_heads(configs)
        tensors = load_file(str(path))
        for modality, head in heads.items():
            prefix = f"{modality}."
            head.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise OmniSepError(f"Encoder heads {describe(path)} are damaged or not omnisep heads ({type(exc).__name__}).") from None
    return heads, description


def _label_table(labels: Sequence[str], anchors: Mapping[str, torch.Tensor]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    names = sorted(set(labels))
    missing = [name for name in names if name not in anchors]
    if missing:
        raise ValueError(f"no anchor embedding for labels {missing[:5]}")
    table = F.normalize(torch.stack([torch.as_tensor(anchors[name], dtype=torch.float32) for name in names]), dim=-1)
    position = {name: i for i, name in enumerate(names)}
    targets = torch.tensor([position[label] for label in labels])
    return names, table, targets


def train_heads(
    features_by_modality: Mapping[str, torch.Tensor],
    labels: Mapping[str, Sequence[str]] | Sequence[str],
    label_embeddings: Mapping[str, torch.Tensor],
    hidden: int = 512,
    epochs: int = 200,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    temperature: float = 0.05,
    learn_temperature: bool = False,
    feature_noise: float = 0.0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Train one head per modality; returns the heads' state dict (``"{modality}.{parameter}"``).

    ``features_by_modality``: ``{"image": [N_i, F_i], "audio": [N_a, F_a]}``;
    ``labels``: the label of each row (one list per modality, or one list
    shared when all modalities have the same rows); ``label_embeddings``:
    the frozen anchor (text) embedding of each label. ``feature_noise``
    adds Gaussian noise of that fraction of the feature standard deviation
    during training: a cheap regulariser for small corpora.
    """
    generator = torch.Generator().manual_seed(seed)
    out_dim = len(next(iter(label_embeddings.values())))
    configs = {m: HeadConfig(int(f.shape[1]), out_dim, hidden) for m, f in features_by_modality.items()}
    heads = build_heads(configs, seed)
    for modality, features in features_by_modality.items():
        rows = labels[modality] if isinstance(labels, Mapping) else labels
        features = torch.as_tensor(features, dtype=torch.float32)
        if len(rows) != len(features):
            raise ValueError(f"{modality}: {len(features)} feature rows but {len(rows)} labels")
        _, anchors, targets = _label_table(list(rows), label_embeddings)
        # Standardise inputs (the statistics become part of the first layer, so the head stays one module).
        mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
        inputs = (features - mean) / std
        head = heads[modality]
        log_temperature = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learn_temperature)
        parameters = list(head.parameters()) + ([log_temperature] if learn_temperature else [])
        optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
        steps_per_epoch = max(1, math.ceil(len(inputs) / batch_size))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * steps_per_epoch)
        head.train()
        for _ in range(epochs):
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(inputs), batch_size):
                batch = order[start : start + batch_size]
                x = inputs[batch]
                if feature_noise > 0:
                    x = x + feature_noise * torch.randn(x.shape, generator=generator)
                projected = F.normalize(head(x), dim=-1)
                logits = projected @ anchors.T / log_temperature.exp().clamp_min(1e-3)
                loss = F.cross_entropy(logits, targets[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
        head.eval()
        _fold_standardisation(head, mean, std)
    return {f"{m}.{k}": v.detach().clone() for m, head in heads.items() for k, v in head.state_dict().items()}


@torch.no_grad()
def _fold_standardisation(head: ProjectionHead, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Make ``head(x)`` equal ``head_trained((x - mean) / std)`` by rewriting the first linear layer."""
    first = head.layers[0]
    first.weight.div_(std.unsqueeze(0))
    first.bias.sub_(first.weight @ mean)


def heads_from_state(state: Mapping[str, torch.Tensor], hidden: int | None = None) -> nn.ModuleDict:
    """Rebuild a ModuleDict of heads from :func:`train_heads`' output (shapes tell the sizes)."""
    configs = {}
    for modality in sorted({key.split(".", 1)[0] for key in state}):
        first = state[f"{modality}.layers.0.weight"]
        two_layer = f"{modality}.layers.2.weight" in state
        out_dim = state[f"{modality}.layers.2.weight"].shape[0] if two_layer else first.shape[0]
        configs[modality] = HeadConfig(first.shape[1], out_dim, first.shape[0] if two_layer else 0)
    heads = build_heads(configs)
    for modality, head in heads.items():
        prefix = f"{modality}."
        head.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    return heads.eval()


# -- evaluation ------------------------------------------------------------------------------


def _topk_hits(scores: torch.Tensor, query_labels: Sequence[str], item_labels: Sequence[str], ks: Sequence[int]) -> dict:
    order = scores.argsort(dim=1, descending=True)
    item_labels = list(item_labels)
    result = {}
    for k in ks:
        hits = [
            any(item_labels[j] == query_labels[i] for j in order[i, :k].tolist()) for i in range(len(query_labels))
        ]
        result[f"top{k}"] = sum(hits) / max(1, len(hits))
    result["queries"] = len(query_labels)
    return result


def retrieval_table(
    audio: torch.Tensor,
    audio_labels: Sequence[str],
    text: torch.Tensor | None = None,
    text_labels: Sequence[str] | None = None,
    image: torch.Tensor | None = None,
    image_labels: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 5),
) -> dict[str, dict]:
    """Cross-modal retrieval accuracy in the shared space.

    - ``text->audio``: each label text ranks the audio items; a hit when an
      item of that label is in the top k;
    - ``image->audio``: the same with each image as the query;
    - ``audio->text``: each audio item ranks the label texts; a hit when its
      own label is in the top k (``chance_top1`` = 1 / number of labels).
    """
    audio = F.normalize(torch.as_tensor(audio, dtype=torch.float32), dim=-1)
    table = {}
    if text is not None:
        text = F.normalize(torch.as_tensor(text, dtype=torch.float32), dim=-1)
        table["text->audio"] = _topk_hits(text @ audio.T, list(text_labels), audio_labels, ks)
        row = _topk_hits(audio @ text.T, list(audio_labels), text_labels, ks)
        row["chance_top1"] = 1.0 / len(set(text_labels))
        table["audio->text"] = row
    if image is not None:
        image = F.normalize(torch.as_tensor(image, dtype=torch.float32), dim=-1)
        table["image->audio"] = _topk_hits(image @ audio.T, list(image_labels), audio_labels, ks)
    return table


def format_retrieval_table(table: Mapping[str, Mapping]) -> str:
    lines = ["direction       top1   top5   queries"]
    for direction, row in table.items():
        lines.append(f"{direction:<14} {row.get('top1', float('nan')):6.3f} {row.get('top5', float('nan')):6.3f} {row['queries']:7d}")
    return "\n".join(lines)
