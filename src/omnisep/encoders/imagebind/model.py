"""ImageBind (Girdhar et al., CVPR 2023) for inference, written from its published structure.

Module and parameter names follow the official checkpoint exactly, so
``imagebind_huge.pth`` loads strictly with no renaming. Each modality runs
preprocessor (patch stem + CLS token + positional embedding) -> transformer
trunk -> head (LayerNorm, pooled token, linear projection) -> postprocessor
(L2 normalisation, then a logit scale for all but vision).

Inference only: stochastic depth and dropout are identities in eval mode, so
they are not modelled. Depth, thermal and IMU branches exist so that a full
checkpoint has a home for every entry; omnisep queries use vision, text and
audio (``QUERY_MODALITIES``), and :func:`~.loader.load_imagebind` builds only
those by default.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from omnisep.encoders.imagebind.config import MODALITIES, QUERY_MODALITIES, BranchConfig, ImageBindConfig

MAX_LOGIT_SCALE = 100.0
TRUNK_NORM_EPS = 1e-6  # trunk blocks, vision pre-norm and heads; stems use LayerNorm's default 1e-5


class PadToFrames(nn.Module):
    """An image is a video of ``frames`` identical frames for the Conv3d stem."""

    def __init__(self, frames: int):
        super().__init__()
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2).expand(-1, -1, self.frames, -1, -1)
        return x


class PatchStem(nn.Module):
    """Patches (conv) or windows (linear) to tokens ``[B, N, D]``, optionally LayerNorm-ed."""

    def __init__(self, proj: nn.Module, norm_dim: int | None = None):
        super().__init__()
        self.proj = proj
        if norm_dim is not None:
            self.norm_layer = nn.LayerNorm(norm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        if x.ndim > 3:  # conv output [B, D, *grid]
            x = x.flatten(2).transpose(1, 2)
        if hasattr(self, "norm_layer"):
            x = self.norm_layer(x)
        return x


class PositionalEmbedding(nn.Module):
    def __init__(self, num_tokens: int, dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, num_tokens, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)


class PatchPreprocessor(nn.Module):
    """CLS token + patch tokens + learned positions (vision, audio, depth, thermal)."""

    def __init__(self, stem_name: str, stem: PatchStem, num_patches: int, dim: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.stem_name = stem_name
        setattr(self, stem_name, stem)
        self.pos_embedding_helper = PositionalEmbedding(num_patches + 1, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = getattr(self, self.stem_name)(x)
        expected = self.pos_embedding_helper.pos_embed.shape[1] - 1
        if tokens.shape[1] != expected:
            raise ValueError(f"input gives {tokens.shape[1]} patches, the model was built for {expected}")
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embedding_helper.pos_embed


class ImuPreprocessor(nn.Module):
    """Positions first, then CLS, then the window stem: the checkpoint's order."""

    def __init__(self, config: ImageBindConfig, dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, config.imu_tokens + 1, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        features = config.imu_channels * config.imu_window
        self.imu_stem = PatchStem(nn.Linear(features, dim, bias=False), norm_dim=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, T] -> [B, T / w, C * w]: each window of w samples of all channels is one token
        batch, channels, _ = x.shape
        window = self.imu_stem.proj.in_features // channels
        x = x.unfold(-1, window, window).permute(0, 2, 1, 3).reshape(batch, -1, channels * window)
        tokens = self.imu_stem(x)
        cls = self.cls_token.expand(batch, -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed


class TextPreprocessor(nn.Module):
    def __init__(self, config: ImageBindConfig, dim: int):
        super().__init__()
        length = config.context_length
        self.pos_embed = nn.Parameter(torch.empty(1, length, dim))
        nn.init.normal_(self.pos_embed, std=0.01)
        self.register_buffer("mask", torch.full((length, length), float("-inf")).triu_(1))
        self.token_embedding = nn.Embedding(config.vocab_size, dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(ids) + self.pos_embed


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, add_bias_kv: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, bias=True, add_bias_kv=add_bias_kv, batch_first=True)
        self.norm_1 = nn.LayerNorm(dim, eps=TRUNK_NORM_EPS)
        self.mlp = Mlp(dim, 4 * dim)
        self.norm_2 = nn.LayerNorm(dim, eps=TRUNK_NORM_EPS)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm_1(x)
        x = x + self.attn(h, h, h, attn_mask=attn_mask, need_weights=False)[0]
        return x + self.mlp(self.norm_2(x))


class Trunk(nn.Module):
    def __init__(self, branch: BranchConfig):
        super().__init__()
        norm = nn.LayerNorm(branch.embed_dim, eps=TRUNK_NORM_EPS) if branch.pre_layernorm else nn.Identity()
        self.pre_transformer_layer = nn.Sequential(norm)
        self.blocks = nn.ModuleList(
            Block(branch.embed_dim, branch.num_heads, branch.add_bias_kv) for _ in range(branch.num_blocks)
        )

    def forward(self, tokens: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.pre_transformer_layer(tokens)
        for block in self.blocks:
            x = block(x, attn_mask)
        return x


class SelectToken(nn.Module):
    def __init__(self, index: int = 0):
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


class TextHead(nn.Module):
    """Pools the end-of-text token (the highest id in each row), then projects."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim, eps=TRUNK_NORM_EPS), nn.Linear(dim, out_dim, bias=False))

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        eot = ids.argmax(dim=-1)
        return self.proj(x[torch.arange(x.shape[0], device=x.device), eot])


def _cls_head(dim: int, out_dim: int, dropout: bool = False) -> nn.Sequential:
    layers = [nn.LayerNorm(dim, eps=TRUNK_NORM_EPS), SelectToken(0)]
    if dropout:  # IMU's head has a dropout, which shifts the projection's index to 3
        layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(dim, out_dim, bias=False))
    return nn.Sequential(*layers)


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class LogitScale(nn.Module):
    def __init__(self, init: float, learnable: bool):
        super().__init__()
        value = torch.tensor(float(init)).log()
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.log_logit_scale.exp(), max=MAX_LOGIT_SCALE) * x


def _postprocessor(branch: BranchConfig) -> nn.Module:
    if branch.logit_scale_init is None:
        return Normalize()
    return nn.Sequential(Normalize(), LogitScale(branch.logit_scale_init, branch.logit_scale_learnable))


def _preprocessor(name: str, config: ImageBindConfig, dim: int) -> nn.Module:
    if name == "vision":
        patch = config.vision_patch
        conv = nn.Conv3d(3, dim, (config.vision_frames, patch, patch), stride=(config.vision_frames, patch, patch), bias=False)
        stem = PatchStem(nn.Sequential(PadToFrames(config.vision_frames), conv))
        return PatchPreprocessor("rgbt_stem", stem, config.vision_tokens, dim)
    if name == "text":
        return TextPreprocessor(config, dim)
    if name == "audio":
        conv = nn.Conv2d(1, dim, config.audio_patch, stride=config.audio_stride, bias=False)
        rows, cols = config.audio_grid
        return PatchPreprocessor("rgbt_stem", PatchStem(conv, norm_dim=dim), rows * cols, dim)
    if name in ("depth", "thermal"):
        conv = nn.Conv2d(1, dim, config.depth_patch, stride=config.depth_patch, bias=False)
        stem_name = "depth_stem" if name == "depth" else "rgbt_stem"
        return PatchPreprocessor(stem_name, PatchStem(conv, norm_dim=dim), config.depth_tokens, dim)
    if name == "imu":
        return ImuPreprocessor(config, dim)
    raise ValueError(f"unknown modality {name!r}")


class ImageBindModel(nn.Module):
    def __init__(self, config: ImageBindConfig, modalities: Sequence[str] = QUERY_MODALITIES):
        super().__init__()
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}")
        # Checkpoint order, whatever order the caller listed them in.
        self.modalities = tuple(name for name in MODALITIES if name in modalities)
        self.config = config
        out = config.out_embed_dim
        branches = {name: config.branches[name] for name in self.modalities}
        self.modality_preprocessors = nn.ModuleDict(
            {name: _preprocessor(name, config, b.embed_dim) for name, b in branches.items()}
        )
        self.modality_trunks = nn.ModuleDict({name: Trunk(b) for name, b in branches.items()})
        self.modality_heads = nn.ModuleDict(
            {
                name: TextHead(b.embed_dim, out) if name == "text" else _cls_head(b.embed_dim, out, dropout=name == "imu")
                for name, b in branches.items()
            }
        )
        self.modality_postprocessors = nn.ModuleDict({name: _postprocessor(b) for name, b in branches.items()})
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def embed(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        """Postprocessed embeddings; ``[B, S, ...]`` clip inputs are embedded per clip and averaged over S.

        As in the reference, the average is of postprocessed (normalised and
        scaled) clip embeddings and is not renormalised here.
        """
        if modality not in self.modalities:
            raise ValueError(f"this model was built without the {modality!r} branch")
        clip_dims = {"vision": 4, "text": 2, "audio": 4, "depth": 4, "thermal": 4, "imu": 3}[modality]
        clips = inputs.ndim > clip_dims
        if clips:
            batch, count = inputs.shape[:2]
            inputs = inputs.reshape(batch * count, *inputs.shape[2:])
        tokens = self.modality_preprocessors[modality](inputs)
        if modality == "text":
            features = self.modality_trunks.text(tokens, attn_mask=self.modality_preprocessors.text.mask)
            out = self.modality_heads.text(features, inputs)
        else:
            out = self.modality_heads[modality](self.modality_trunks[modality](tokens))
        out = self.modality_postprocessors[modality](out)
        if clips:
            out = out.reshape(batch, count, -1).mean(dim=1)
        return out

    def embed_vision(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised pixels -> ``[B, out_dim]``."""
        return self.embed("vision", pixels)

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """``[B, context_length]`` int64 token ids -> ``[B, out_dim]``."""
        return self.embed("text", ids)

    def embed_audio(self, fbank: torch.Tensor) -> torch.Tensor:
        """``[B, clips, 1, mel_bins, frames]`` normalised fbank -> ``[B, out_dim]``."""
        return self.embed("audio", fbank)
