"""A clean-room ImageBind (vision, text, audio) that loads the official weights unchanged."""

from omnisep.encoders.imagebind.config import HUGE, TINY, ImageBindConfig
from omnisep.encoders.imagebind.encoder import ImageBindEncoder
from omnisep.encoders.imagebind.loader import convert_imagebind, default_weights_path, load_imagebind
from omnisep.encoders.imagebind.model import ImageBindModel

__all__ = [
    "HUGE",
    "TINY",
    "ImageBindConfig",
    "ImageBindEncoder",
    "ImageBindModel",
    "convert_imagebind",
    "default_weights_path",
    "load_imagebind",
]
