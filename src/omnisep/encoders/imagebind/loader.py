"""Load the official ``imagebind_huge.pth`` unchanged, or its safetensors conversion.

The ``.pth`` file is a pickled state dict: it is read with
``torch.load(weights_only=True)``, PyTorch's restricted unpickler that only
rebuilds tensors and containers and never runs code from the file. It is
memory-mapped, so only the branches used are ever paged in.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from omnisep.encoders.base import freeze
from omnisep.encoders.imagebind.config import HUGE, MODALITIES, QUERY_MODALITIES, ImageBindConfig
from omnisep.encoders.imagebind.model import ImageBindModel
from omnisep.encoders.weights import cache_root, save_safetensors_atomic
from omnisep.errors import OmniSepError, describe

WEIGHTS_NAMES = ("imagebind_huge.safetensors", "imagebind_huge.pth")


def default_weights_path() -> Path | None:
    """``$OMNISEP_CACHE/imagebind_huge.safetensors`` or ``.pth``, whichever exists first."""
    for name in WEIGHTS_NAMES:
        candidate = cache_root() / name
        if candidate.is_file():
            return candidate
    return None


def expected_shapes(config: ImageBindConfig = HUGE, modalities: Sequence[str] = MODALITIES) -> dict[str, tuple]:
    """Every state-dict entry of the model, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        model = ImageBindModel(config, modalities)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise OmniSepError(f"ImageBind weights {describe(path)} do not exist.")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except (pickle.UnpicklingError, RuntimeError, SafetensorError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise OmniSepError(f"ImageBind weights {describe(path)} cannot be read ({type(exc).__name__}: {str(exc)[:200]}).") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OmniSepError(f"ImageBind weights {describe(path)} are not a state dict of tensors.")
    return state


def select_branches(
    state: dict[str, torch.Tensor], path, config: ImageBindConfig = HUGE, modalities: Sequence[str] = QUERY_MODALITIES
) -> dict[str, torch.Tensor]:
    """The entries of ``modalities``, after checking every name and shape against the architecture."""
    wanted = expected_shapes(config, modalities)
    known = expected_shapes(config, MODALITIES)
    foreign = [name for name in state if name not in known]
    if foreign:
        raise OmniSepError(
            f"ImageBind weights {describe(path)} hold {len(foreign)} entries that ImageBind huge does not have "
            f"(first: '{foreign[0]}'): not an ImageBind huge checkpoint."
        )
    missing = [name for name in wanted if name not in state]
    if missing:
        raise OmniSepError(
            f"ImageBind weights {describe(path)} lack {len(missing)} entries (first: '{missing[0]}'): incomplete or another model."
        )
    for name, shape in wanted.items():
        if tuple(state[name].shape) != shape:
            raise OmniSepError(
                f"ImageBind weights {describe(path)}: '{name}' has shape {tuple(state[name].shape)}, expected {shape}."
            )
    return {name: state[name] for name in wanted}


def load_imagebind(
    path: str | os.PathLike,
    modalities: Sequence[str] = QUERY_MODALITIES,
    config: ImageBindConfig = HUGE,
    device: str | torch.device = "cpu",
) -> ImageBindModel:
    """A frozen :class:`ImageBindModel` with the given branches, its tensors taken from ``path`` without copies."""
    state = select_branches(read_state_dict(path), path, config, modalities)
    with torch.device("meta"):
        model = ImageBindModel(config, modalities)
    model.load_state_dict(state, strict=True, assign=True)
    return freeze(model.to(device).float())


def convert_imagebind(
    source: str | os.PathLike,
    target: str | os.PathLike,
    modalities: Sequence[str] = QUERY_MODALITIES,
    config: ImageBindConfig = HUGE,
) -> Path:
    """Write the ``modalities`` branches of ``source`` (.pth or .safetensors) to a ``.safetensors`` file.

    The safetensors copy loads without any unpickling and, keeping only
    vision/text/audio, is about 10 % smaller.
    """
    target = Path(target)
    if target.suffix != ".safetensors":
        raise OmniSepError(f"Conversion target {describe(target)} must end in .safetensors.")
    if Path(source).resolve() == target.resolve():
        raise OmniSepError(f"Conversion target {describe(target)} is the source file itself.")
    state = select_branches(read_state_dict(source), source, config, modalities)
    metadata = {"format": "omnisep-imagebind", "modalities": ",".join(modalities), "source": Path(source).name}
    return save_safetensors_atomic(state, target, metadata)
