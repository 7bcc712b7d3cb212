"""Training: `TrainConfig` and `train()`. Checkpoints live in `edgecls.train.checkpoint`."""

from edgecls.train.config import TrainConfig
from edgecls.train.loop import train

__all__ = ["TrainConfig", "train"]
