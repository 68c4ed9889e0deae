"""Checkpoints and training states as safetensors + JSON: nothing is ever unpickled.

A checkpoint is a directory holding ``config.json`` (model config, the
encoder that produced the query embeddings, the Query-Aug labels, training
notes) and ``model.safetensors`` (the Separate-Net weights, the Query-Aug
bank, optional extra tensors under ``extra.``). Directories are written
beside the target and renamed into place, so a crash never leaves a
half-written checkpoint where a good one was.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from omnisep import fileio
from omnisep.errors import OmniSepError, describe
from omnisep.models import MaskNetwork, build, config_from_dict, config_to_dict
from omnisep.queries import QueryBank, check_alpha, check_negative_mode

FORMAT = "omnisep-checkpoint"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
EXTRA_PREFIX = "extra."
ENCODER_FIELDS = ("name", "version", "weights_hash", "dim")

STATE_FORMAT = "omnisep-state"
_STATE_META_KEY = "omnisep_state"


@dataclass
class LoadedCheckpoint:
    model: MaskNetwork
    config: dict[str, Any]
    bank: QueryBank | None
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)


# ---------------------------------------------------------------- checkpoints


def _check_identity(identity: dict[str, Any]) -> dict[str, Any]:
    from omnisep.encoders.base import OPTIONAL_IDENTITY_FIELDS

    missing = [key for key in ENCODER_FIELDS if key not in identity]
    if missing:
        raise ValueError(f"encoder identity lacks {', '.join(missing)}: {identity!r}")
    kept = {key: identity[key] for key in ENCODER_FIELDS + OPTIONAL_IDENTITY_FIELDS if key in identity}
    if identity.get("options"):  # what get_encoder needs to rebuild it (e.g. the toy encoder's dim)
        kept["options"] = dict(identity["options"])
    return kept


def _is_checkpoint_dir(path: Path) -> bool:
    try:
        with open(path / CONFIG_NAME, encoding="utf-8") as handle:
            return json.load(handle).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_checkpoint(
    directory: str | os.PathLike,
    model: MaskNetwork,
    encoder_identity: dict[str, Any],
    bank: QueryBank | None = None,
    training: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    inference: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically; an existing checkpoint there is replaced.

    Linux cannot swap two directories in one step: the old checkpoint is first
    renamed to a hidden ``.NAME.omnisep-*.part`` beside it and deleted only
    after the new one is in place, so a crash at that instant leaves it there,
    not lost (:func:`omnisep.fileio.atomic_dir`).

    Refuses to replace a non-empty directory that is not an omnisep
    checkpoint, so a mistyped path cannot wipe unrelated files. ``inference``
    records measured inference defaults (``{"negative": {"mode", "alpha",
    "auto_alpha"}}``, see :func:`omnisep.api.negative_defaults`).
    """
    target = Path(directory)
    identity = _check_identity(encoder_identity)
    if int(identity["dim"]) != model.config.emb_dim:
        raise ValueError(f"encoder dim {identity['dim']} differs from the model's emb_dim {model.config.emb_dim}")
    if bank is not None and bank.dim != model.config.emb_dim:
        raise ValueError(f"query bank dim {bank.dim} differs from the model's emb_dim {model.config.emb_dim}")
    if target.exists() and not target.is_dir():
        raise OmniSepError(f"{describe(target)} exists and is not a directory; choose another checkpoint path.")
    if target.is_dir() and any(target.iterdir()) and not _is_checkpoint_dir(target):
        raise OmniSepError(
            f"{describe(target)} is a non-empty directory that is not an omnisep checkpoint; refusing to replace it."
        )

    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": config_to_dict(model.config),
        "encoder": identity,
        "query_bank": {"labels": list(bank.labels)} if bank is not None else None,
        "training": training or {},
    }
    if inference:
        config["inference"] = inference
    tensors = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    if bank is not None:
        tensors.update({name: value.cpu() for name, value in bank.to_tensors().items()})
    for name, value in (extra_tensors or {}).items():
        tensors[EXTRA_PREFIX + name] = value.detach().cpu().contiguous().clone()

    with fileio.output_errors(target), fileio.atomic_dir(target) as staging:
        save_file(tensors, str(staging / WEIGHTS_NAME), metadata={"format": FORMAT})
        with open(staging / CONFIG_NAME, "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2, sort_keys=True)
            handle.write("\n")
    return target


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The validated ``config.json`` of a checkpoint directory (no weights are read)."""
    path = Path(directory)
    if not path.is_dir():
        raise OmniSepError(f"{describe(path)} is not a checkpoint directory (it does not exist or is a file).")
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise OmniSepError(f"{describe(config_path)} is missing; {describe(path)} is not an omnisep checkpoint.")
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise OmniSepError(f"{describe(config_path)} is not readable JSON ({error}).") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise OmniSepError(
            f"{describe(config_path)} is not an omnisep checkpoint config (no \"format\": \"{FORMAT}\")."
        )
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise OmniSepError(
            f"{describe(config_path)} has checkpoint format version {version!r}; this omnisep reads up to {FORMAT_VERSION}."
        )
    for key in ("model", "encoder"):
        if not isinstance(config.get(key), dict):
            raise OmniSepError(f"{describe(config_path)} lacks the \"{key}\" section.")
    missing = [key for key in ENCODER_FIELDS if key not in config["encoder"]]
    if missing:
        raise OmniSepError(f"{describe(config_path)}: the \"encoder\" section lacks {', '.join(missing)}.")
    return config


def _read_safetensors(path: Path, device: str | torch.device) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise OmniSepError(f"{describe(path)} is missing.")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata() or {}
            return {name: handle.get_tensor(name) for name in handle.keys()}, metadata
    except OmniSepError:
        raise
    except Exception as error:  # safetensors raises several types for damaged files
        raise OmniSepError(f"{describe(path)} is damaged or not a safetensors file ({error}).") from None


def load_checkpoint(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model (in eval mode), its Query-Aug bank and extra tensors from a checkpoint directory."""
    path = Path(directory)
    config = read_config(path)
    weights_path = path / WEIGHTS_NAME
    try:
        model_config = config_from_dict(config["model"], strict=True)
    except OmniSepError as error:
        raise OmniSepError(f"{describe(path / CONFIG_NAME)}: {error}") from None
    tensors, _ = _read_safetensors(weights_path, map_location)

    bank = None
    bank_section = config.get("query_bank")
    if bank_section is not None:
        labels = bank_section.get("labels") if isinstance(bank_section, dict) else None
        if not isinstance(labels, list):
            raise OmniSepError(f"{describe(path / CONFIG_NAME)}: \"query_bank\" has no label list.")
        if QueryBank.EMBEDDINGS_KEY not in tensors:
            raise OmniSepError(
                f"{describe(weights_path)} lacks the tensor {QueryBank.EMBEDDINGS_KEY!r} that config.json announces."
            )
        try:
            bank = QueryBank.from_tensors(labels, tensors)
        except OmniSepError as error:
            raise OmniSepError(f"{describe(weights_path)}: {error}") from None
        if bank.dim != model_config.emb_dim:
            raise OmniSepError(
                f"{describe(weights_path)}: the query bank has {bank.dim} dimensions, the model {model_config.emb_dim}."
            )
    tensors.pop(QueryBank.EMBEDDINGS_KEY, None)
    extra = {name[len(EXTRA_PREFIX):]: tensors.pop(name) for name in list(tensors) if name.startswith(EXTRA_PREFIX)}

    model = build(model_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected {_preview(unexpected)}")
        raise OmniSepError(f"{describe(weights_path)} does not match its model config: {'; '.join(parts)}.")
    for name, value in tensors.items():
        if value.shape != expected[name].shape:
            raise OmniSepError(
                f"{describe(weights_path)}: tensor {name!r} has shape {tuple(value.shape)}, "
                f"the model config needs {tuple(expected[name].shape)}."
            )
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise OmniSepError(
                f"{describe(weights_path)} is damaged: tensor {name!r} holds NaN or infinite weights."
            )
    model.load_state_dict(tensors)
    model.to(map_location)
    model.eval()
    return LoadedCheckpoint(model=model, config=config, bank=bank, extra_tensors=extra)


def _preview(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_encoder(config: dict[str, Any], encoder_identity: dict[str, Any]) -> None:
    """Refuse query embeddings from an encoder other than the one the checkpoint was trained with."""
    from omnisep.encoders.base import identities_compatible

    recorded = config.get("encoder", {})
    differing = [key for key in ENCODER_FIELDS if str(recorded.get(key)) != str(encoder_identity.get(key))]
    if differing and not identities_compatible(recorded, encoder_identity):
        details = ", ".join(f"{key} {encoder_identity.get(key)!r} vs {recorded.get(key)!r}" for key in differing)
        raise OmniSepError(
            f"the query encoder does not match the one the checkpoint was trained with ({details}); "
            f"use encoder {recorded.get('name')!r} version {recorded.get('version')!r}."
        )


def blend_weights(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                  weight: float) -> dict[str, torch.Tensor]:
    """The point ``weight`` of the way from ``base`` to ``tuned`` in weight space (WiSE-FT).

    A fine-tune that learns one thing often loses a little of another; the straight line back to the
    model it started from keeps most of both at no training cost. Float tensors (running statistics
    too) are interpolated in float32; integer ones (batch counters) are the fine-tune's.
    """
    if not 0.0 <= weight <= 1.0:
        raise OmniSepError(f"the blend weight must lie in [0, 1], not {weight}")
    if base.keys() != tuned.keys():
        raise OmniSepError("the two checkpoints hold different tensors: "
                           f"{_preview(sorted(base.keys() ^ tuned.keys()))}")
    blended = {}
    for name, value in tuned.items():
        start = base[name]
        if start.shape != value.shape:
            raise OmniSepError(f"tensor {name} is {tuple(start.shape)} in the base and {tuple(value.shape)} "
                               "in the fine-tune: they are not one architecture")
        if value.is_floating_point():
            blended[name] = torch.lerp(start.float(), value.float(), weight)
        else:
            blended[name] = value.clone()
    return blended


# ------------------------------------------------------- training states


def flatten_state(state: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested state (e.g. ``optimizer.state_dict()``) into tensors and a JSON-able skeleton.

    Containers are tagged so that int dict keys, tuples and numpy arrays come
    back as they went in.
    """
    tensors: dict[str, torch.Tensor] = {}

    def encode(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            name = f"t{len(tensors)}"
            tensors[name] = value.detach().cpu().contiguous().clone()
            return {"tensor": name}
        if isinstance(value, np.ndarray):
            name = f"t{len(tensors)}"
            tensors[name] = torch.from_numpy(np.ascontiguousarray(value).copy())
            return {"ndarray": name}
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    raise TypeError(f"flatten_state: unsupported dict key {key!r}")
            return {"dict": [[key, encode(item)] for key, item in value.items()]}
        if isinstance(value, tuple):
            return {"tuple": [encode(item) for item in value]}
        if isinstance(value, list):
            return {"list": [encode(item) for item in value]}
        if isinstance(value, np.generic):
            return {"scalar": value.item()}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"flatten_state: unsupported value of type {type(value).__name__}")

    return tensors, encode(state)


def unflatten_state(tensors: dict[str, torch.Tensor], meta: Any) -> Any:
    """Inverse of :func:`flatten_state`."""

    def decode(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        ((tag, payload),) = node.items()
        if tag == "tensor":
            return tensors[payload]
        if tag == "ndarray":
            return tensors[payload].cpu().numpy()
        if tag == "dict":
            return {key: decode(item) for key, item in payload}
        if tag == "tuple":
            return tuple(decode(item) for item in payload)
        if tag == "list":
            return [decode(item) for item in payload]
        if tag == "scalar":
            return payload
        raise ValueError(f"unflatten_state: unknown tag {tag!r}")

    return decode(meta)


def save_state_file(path: str | os.PathLike, state: Any) -> Path:
    """Write a nested training state to one safetensors file (skeleton in its metadata), atomically."""
    target = Path(path)
    tensors, meta = flatten_state(state)
    metadata = {"format": STATE_FORMAT, _STATE_META_KEY: json.dumps(meta)}
    with fileio.output_errors(target), fileio.atomic_path(target, fsync=True) as temp:
        save_file(tensors, str(temp), metadata=metadata)
    return target


def load_state_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Read a state written by :func:`save_state_file`."""
    path = Path(path)
    tensors, metadata = _read_safetensors(path, map_location)
    if metadata.get("format") != STATE_FORMAT or _STATE_META_KEY not in metadata:
        raise OmniSepError(f"{describe(path)} is a safetensors file but not an omnisep training state.")
    try:
        return unflatten_state(tensors, json.loads(metadata[_STATE_META_KEY]))
    except (ValueError, KeyError, TypeError) as error:
        raise OmniSepError(f"{describe(path)} has a damaged training-state description ({error}).") from None


# Negative queries of a model that records nothing (eq. 4 as the paper; v1's tuned automatic alpha).
# Where an automatic negative query's labels come from (omnisep.negatives): the scan, what the query leaves
# (as the query encoder hears it), both evidences summed per label, what the sound tagger hears in what the
# query leaves, or that times the scan's presence per label.
AUTO_SOURCES = ("scan", "residual", "scan+residual", "residual-tagger", "scan*residual-tagger")
NEGATIVE_DEFAULTS = {"mode": "proportional", "alpha": 0.5, "auto_alpha": 0.25, "auto_count": 1, "auto_source": "scan"}


def negative_defaults(config: dict, path) -> dict:
    """The checkpoint's ``inference.negative`` section (mode, alpha, auto_alpha, auto_count, auto_source) over
    :data:`NEGATIVE_DEFAULTS`.

    Which mode and strength suit a network is measured per model (a ``film``
    network wants the logit mode), so the model says it, not the code.
    """
    section = (config.get("inference") or {}).get("negative") or {}
    unknown = sorted(set(section) - set(NEGATIVE_DEFAULTS))
    if not isinstance(section, dict) or unknown:
        raise OmniSepError(f"model {describe(path)}: inference.negative has unknown keys {unknown}.")
    values = {**NEGATIVE_DEFAULTS, **section}
    try:
        check_negative_mode(values["mode"])
        check_alpha(values["alpha"])
        check_alpha(values["auto_alpha"])
        if isinstance(values["auto_count"], bool) or not isinstance(values["auto_count"], int) or values["auto_count"] < 1:
            raise OmniSepError(f"auto_count must be a positive integer, got {values['auto_count']!r}.")
        if values["auto_source"] not in AUTO_SOURCES:
            raise OmniSepError(f"auto_source must be one of {', '.join(AUTO_SOURCES)}, got {values['auto_source']!r}.")
    except OmniSepError as error:
        raise OmniSepError(f"model {describe(path)}: inference.negative: {error}") from None
    return values


def contrast_strength(config: dict, path) -> float:
    """The checkpoint's query-contrast strength ``inference.contrast.alpha`` (0, none, when it records none)."""
    section = (config.get("inference") or {}).get("contrast") or {}
    if not isinstance(section, dict) or set(section) - {"alpha"}:
        raise OmniSepError(f"model {describe(path)}: inference.contrast takes only 'alpha'.")
    try:
        strength = check_alpha(section.get("alpha", 0.0))
    except OmniSepError as error:
        raise OmniSepError(f"model {describe(path)}: inference.contrast: {error}") from None
    if strength > 0 and not config.get("query_bank"):
        raise OmniSepError(f"model {describe(path)}: inference.contrast needs the model's query bank, and it has none.")
    return strength


def second_look_gate(config: dict, path) -> float | None:
    """The checkpoint's ``inference.second_look.below_db`` (None, no second look, when it records none): an
    output under that share of the mixture's energy is separated again from itself
    (:func:`omnisep.models.signal_path.look_again`). Chosen per model on validation."""
    section = (config.get("inference") or {}).get("second_look")
    if section is None:
        return None
    if not isinstance(section, dict) or set(section) != {"below_db"}:
        raise OmniSepError(f"model {describe(path)}: inference.second_look takes exactly 'below_db'.")
    value = section["below_db"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value >= 0:
        raise OmniSepError(f"model {describe(path)}: inference.second_look.below_db must be a negative number of dB, "
                           f"got {value!r}.")
    return float(value)


SCAN_VERIFY_FIELDS = {"top": int, "window_seconds": float, "power": float, "threshold": float, "tagger_power": float}
# ``listen`` (default true): whether the encoder listens to the separated audio; a model that does not
# listen must weigh its scan with the shipped tagger (``tagger_power``).
SCAN_VERIFY_FLAGS = ("listen",)


def scan_settings(config: dict, path) -> dict:
    """The checkpoint's ``inference.scan`` section, chosen for this model on validation: ``threshold`` (or None)
    for the plain scan, and ``verify`` (or None): the ``scan.Verification`` settings plus the threshold of
    the verified scan's evidence."""
    section = (config.get("inference") or {}).get("scan") or {}
    if not isinstance(section, dict) or set(section) - {"threshold", "verify"}:
        raise OmniSepError(f"model {describe(path)}: inference.scan takes only 'threshold' and 'verify'.")
    value = section.get("threshold")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0):
        raise OmniSepError(f"model {describe(path)}: inference.scan.threshold must be between 0 and 1, got {value!r}.")
    verify = section.get("verify")
    if verify is not None:
        if not isinstance(verify, dict) or set(verify) - set(SCAN_VERIFY_FIELDS) - set(SCAN_VERIFY_FLAGS):
            raise OmniSepError(f"model {describe(path)}: inference.scan.verify takes "
                               f"{', '.join(sorted([*SCAN_VERIFY_FIELDS, *SCAN_VERIFY_FLAGS]))}.")
        for key in SCAN_VERIFY_FLAGS:
            if key in verify and not isinstance(verify[key], bool):
                raise OmniSepError(f"model {describe(path)}: inference.scan.verify.{key} must be true or false, got {verify[key]!r}.")
        if verify.get("listen") is False and "tagger_power" not in verify:
            raise OmniSepError(f"model {describe(path)}: inference.scan.verify must listen or give a tagger_power.")
        for key, kind in SCAN_VERIFY_FIELDS.items():
            item = verify.get(key)
            if item is not None and (isinstance(item, bool) or not isinstance(item, (int, float)) or item <= 0
                                     or (kind is int and item != int(item)) or (key == "threshold" and item > 1)):
                raise OmniSepError(f"model {describe(path)}: inference.scan.verify.{key} must be a positive "
                                   f"{'whole number' if kind is int else 'number'}, got {item!r}.")
        verify = {**{key: kind(verify[key]) for key, kind in SCAN_VERIFY_FIELDS.items() if key in verify},
                  **{key: verify[key] for key in SCAN_VERIFY_FLAGS if key in verify}}
    return {"threshold": None if value is None else float(value), "verify": verify}


def scan_threshold(config: dict, path, fallback: float, verified: bool = True) -> float:
    """The presence threshold chosen for this model on validation, else ``fallback``: the verified scan's
    (``inference.scan.verify.threshold``) when the model verifies and ``verified`` is asked, else the plain one."""
    settings = scan_settings(config, path)
    if verified and settings["verify"] is not None and "threshold" in settings["verify"]:
        return settings["verify"]["threshold"]
    return fallback if settings["threshold"] is None else settings["threshold"]
