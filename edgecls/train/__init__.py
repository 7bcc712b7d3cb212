"""Training: `TrainConfig` and `train()`. Checkpoints live in `edgecls.train.checkpoint`.

`train` loads lazily (PEP 562): the command line builds its options from `TrainConfig` without importing torch."""

from edgecls.train.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str):
    if name == "train":
        from edgecls.train.loop import train

        return train
    raise AttributeError(f"module 'edgecls.train' has no attribute {name!r}")
