"""Training: config, Query-Mixup and weighted BCE, schedule, loop with resume, DDP.

Imported lazily so that using one part (say, the loss) does not load the
encoders and the data pipeline.
"""

__all__ = ["TrainConfig", "TrainResult", "load_config", "train"]


def __getattr__(name):
    if name in ("TrainConfig", "load_config"):
        from omnisep.training import config

        return getattr(config, name)
    if name in ("TrainResult", "train"):
        from omnisep.training import loop

        return getattr(loop, name)
    raise AttributeError(name)
