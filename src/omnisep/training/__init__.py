"""Training: config, Query-Mixup and weighted BCE, schedule, loop with resume, DDP."""

from omnisep.training.config import TrainConfig, load_config
from omnisep.training.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_config", "train"]
