"""Separate-Net kinds by name: a checkpoint's ``model.kind`` picks the config class and network.

Adding a network kind means writing its module under ``models/`` and one
:func:`register` call; training, checkpoints, whole-file and streamed
inference and evaluation then work with it unchanged. Checkpoints written
before kinds existed have no ``kind`` and are the paper's network.
"""

from __future__ import annotations

from typing import Any

from omnisep.errors import OmniSepError
from omnisep.models.base import MaskNetwork

DEFAULT_KIND = "paper"
_KINDS: dict[str, type[MaskNetwork]] = {}


def register(network: type[MaskNetwork]) -> type[MaskNetwork]:
    """Make a network class buildable by its ``kind`` (usable as a class decorator)."""
    existing = _KINDS.get(network.kind)
    if existing is not None and existing is not network:
        raise ValueError(f"network kind {network.kind!r} is already registered to {existing.__name__}")
    _KINDS[network.kind] = network
    return network


def kinds() -> list[str]:
    return sorted(_KINDS)


def network_class(kind: str) -> type[MaskNetwork]:
    try:
        return _KINDS[kind]
    except KeyError:
        raise OmniSepError(f"model config: unknown network kind {kind!r}; known kinds are {', '.join(kinds())}.") from None


def config_from_dict(values: dict[str, Any], strict: bool = False):
    """``{"kind": ..., **fields}`` -> the kind's config object (``kind`` defaults to the paper's)."""
    if not isinstance(values, dict):
        raise OmniSepError(f"model config: expected a mapping, got {type(values).__name__}.")
    fields = dict(values)
    kind = fields.pop("kind", DEFAULT_KIND)
    if not isinstance(kind, str):
        raise OmniSepError(f"model config: 'kind' must be a string, got {kind!r}.")
    return network_class(kind).config_class.from_dict(fields, strict=strict)


def kind_of_config(config) -> str:
    for kind, network in _KINDS.items():
        if type(config) is network.config_class:
            return kind
    raise ValueError(f"no registered network kind uses {type(config).__name__}")


def config_to_dict(config) -> dict[str, Any]:
    """A config as stored in checkpoints and training configs: ``kind`` first, then its fields."""
    return {"kind": kind_of_config(config), **config.to_dict()}


def build(config) -> MaskNetwork:
    """A freshly initialised network for a config object or a ``{"kind", ...}`` dict."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    return network_class(kind_of_config(config))(config)
