"""ImageBind's sizes: the released "huge" model and a tiny one for tests.

The huge values are those of the official checkpoint (1,311 state-dict
entries); ``tests/encoders/test_imagebind_model.py`` checks every name and
shape against the reference listing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

MODALITIES = ("vision", "text", "audio", "depth", "thermal", "imu")
QUERY_MODALITIES = ("vision", "text", "audio")


@dataclass(frozen=True)
class BranchConfig:
    """One modality's transformer trunk."""

    embed_dim: int
    num_blocks: int
    num_heads: int
    add_bias_kv: bool = True
    pre_layernorm: bool = False  # LayerNorm before the first block (vision only)
    logit_scale_init: float | None = None  # postprocessor scale; None: normalise only
    logit_scale_learnable: bool = False


@dataclass(frozen=True)
class ImageBindConfig:
    name: str = "huge"  # recorded as the encoder version
    out_embed_dim: int = 1024
    # vision: an image repeated to 2 frames, Conv3d (2, 14, 14) patches
    image_size: int = 224
    vision_patch: int = 14
    vision_frames: int = 2
    # text: CLIP BPE ids, causal attention, the EOT token is pooled
    context_length: int = 77
    vocab_size: int = 49408
    # audio: 128 x 204 kaldi fbank, 16 x 16 patches with stride 10
    audio_mel_bins: int = 128
    audio_frames: int = 204
    audio_patch: int = 16
    audio_stride: int = 10
    # depth / thermal: one-channel 224 x 224 images, 16 x 16 patches
    depth_image_size: int = 224
    depth_patch: int = 16
    # imu: 6 channels x 2000 samples unfolded into 250 windows of 8
    imu_channels: int = 6
    imu_length: int = 2000
    imu_window: int = 8
    branches: dict = field(
        default_factory=lambda: {
            "vision": BranchConfig(1280, 32, 16, add_bias_kv=False, pre_layernorm=True),
            "text": BranchConfig(1024, 24, 16, add_bias_kv=False, logit_scale_init=1 / 0.07, logit_scale_learnable=True),
            "audio": BranchConfig(768, 12, 12, logit_scale_init=20.0),
            "depth": BranchConfig(384, 12, 8, logit_scale_init=5.0),
            "thermal": BranchConfig(768, 12, 12, logit_scale_init=10.0),
            "imu": BranchConfig(512, 6, 8, logit_scale_init=5.0),
        }
    )

    @property
    def vision_tokens(self) -> int:
        return (self.image_size // self.vision_patch) ** 2

    @property
    def audio_grid(self) -> tuple[int, int]:
        rows = (self.audio_mel_bins - self.audio_patch) // self.audio_stride + 1
        cols = (self.audio_frames - self.audio_patch) // self.audio_stride + 1
        return rows, cols

    @property
    def depth_tokens(self) -> int:
        return (self.depth_image_size // self.depth_patch) ** 2

    @property
    def imu_tokens(self) -> int:
        return self.imu_length // self.imu_window


HUGE = ImageBindConfig()

# Same geometry as HUGE wherever preprocessing depends on it (77 tokens,
# 128 x 204 fbank), tiny widths and depths so a CPU forward takes milliseconds.
TINY = replace(
    HUGE,
    name="tiny",
    out_embed_dim=16,
    image_size=28,
    depth_image_size=32,
    branches={
        name: replace(branch, embed_dim=32, num_blocks=2, num_heads=2)
        for name, branch in HUGE.branches.items()
    },
)
