"""Separate-Net kinds behind one contract (``base``), the registry that builds them, and the signal path."""

from omnisep.models.base import FrameLayout, MaskNetwork, NetworkConfig
from omnisep.models.registry import build, config_from_dict, config_to_dict, kinds, register
from omnisep.models.ensemble import EnsembleConfig, EnsembleNet
from omnisep.models.film import FilmNet, FilmNetConfig
from omnisep.models.separate_net import SeparateNet, SeparateNetConfig
from omnisep.models.unet import UNet

register(SeparateNet)
register(FilmNet)
register(EnsembleNet)

__all__ = [
    "EnsembleConfig",
    "EnsembleNet",
    "FilmNet",
    "FilmNetConfig",
    "FrameLayout",
    "MaskNetwork",
    "NetworkConfig",
    "SeparateNet",
    "SeparateNetConfig",
    "UNet",
    "build",
    "config_from_dict",
    "config_to_dict",
    "kinds",
    "register",
]
