"""The Separate-Net and its U-Net."""

from omnisep.models.separate_net import SeparateNet, SeparateNetConfig
from omnisep.models.unet import UNet

__all__ = ["SeparateNet", "SeparateNetConfig", "UNet"]
