"""`TrainConfig`: every training option in one frozen, validated dataclass (also stored in checkpoints)."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field

from edgecls.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta")
SCHEDULES = ("cosine", "linear", "step", "plateau", "constant")
# Where the run lives and how it is computed, not what it computes: free to change on --resume.
FREE_ON_RESUME = frozenset({"out", "data_dir", "device", "resume", "resume_override", "early_stopping", "micro_batch_size"})


@dataclass(frozen=True)
class TrainConfig:
    model: str
    dataset: str = "cifar10"
    data_dir: str | None = None
    out: str = "runs/train"
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    step_size: int = 30
    gamma: float = 0.1
    label_smoothing: float = 0.0
    class_weighted: bool = False
    early_stopping: int = 0
    subset: int | None = None
    val_fraction: float = 0.1
    seed: int = 0
    amp: bool = True
    device: str = "auto"
    normalization: str = "zscore"
    augment: bool = True
    crop_padding: int = 4
    rotate_degrees: float = 0.0
    shift_fraction: float = 0.0
    erase: float = 0.0
    init_from: str | None = None
    trainable_blocks: int | None = None
    resume: bool = False
    resume_override: bool = False
    image_size: int | None = None
    skip_bad_images: bool = False
    model_kwargs: dict = field(default_factory=dict)
    recipe: str | None = None
    micro_batch_size: int | None = None
    bias_lr_scale: float = 1.0
    lookahead: bool = False
    alternating_flip: bool = False
    pad_mode: str = "zeros"
    whiten_init: bool = False
    whiten_bias_epochs: int = 3

    def __post_init__(self) -> None:
        def choice(name: str, value: str, options: tuple[str, ...]) -> None:
            if value not in options:
                close = difflib.get_close_matches(value, options, n=1)
                raise ConfigError(f"{name} must be one of {', '.join(options)}, got {value!r}"
                                  + (f" (did you mean {close[0]!r}?)" if close else ""))

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value}")
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("schedule", self.schedule, SCHEDULES)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.micro_batch_size is not None and not 1 <= self.micro_batch_size <= self.batch_size:
            raise ConfigError(f"micro_batch_size must be in 1..batch_size ({self.batch_size}), got {self.micro_batch_size}")
        if self.bias_lr_scale <= 0:
            raise ConfigError(f"bias_lr_scale must be > 0, got {self.bias_lr_scale}")
        if self.subset is not None and self.subset < 1:
            raise ConfigError(f"subset must be ≥ 1 images (leave it out to train on everything), got {self.subset}")
        if not 0 < self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        if self.trainable_blocks is not None and self.init_from is None:
            raise ConfigError("trainable_blocks freezes a pretrained backbone: pass init_from=CKPT with it")

    def changes_on_resume(self, recorded: dict) -> dict[str, tuple]:
        """Options that differ from the run being resumed and would change its model, data or schedule."""
        return {k: (recorded[k], v) for k, v in self.to_dict().items()
                if k in recorded and k not in FREE_ON_RESUME and recorded[k] != v}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
