"""`TrainConfig`: every training option in one frozen, validated dataclass (also stored in checkpoints)."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field

from edgecls.errors import ConfigError
from edgecls.names import DATASETS, NORMALIZATIONS, OPTIMIZERS, PAD_MODES, SCHEDULES
from edgecls.options import DATA_DIR, SKIP_BAD_IMAGES, option

# Where the run lives and how it is computed, not what it computes: free to change on --resume.
FREE_ON_RESUME = frozenset(
    {"out", "data_dir", "device", "resume", "resume_override", "early_stopping", "micro_batch_size"}
)


@dataclass(frozen=True)
class TrainConfig:
    """Every training option: the `edgecls train` command line is built from these fields."""

    model: str = field(metadata=option("zoo model name, see `edgecls models`"))
    dataset: str = field(default="cifar10", metadata=option("dataset", choices=DATASETS))
    data_dir: str | None = field(default=None, metadata=DATA_DIR)
    out: str | None = field(default=None, metadata=option("run directory (default: runs/MODEL)"))
    epochs: int = field(default=30, metadata=option("passes over the training split"))
    batch_size: int = field(default=128, metadata=option("images per optimizer step (per process under torchrun)"))
    optimizer: str = field(default="sgd", metadata=option("optimizer", choices=OPTIMIZERS))
    lr: float = field(default=0.05, metadata=option("peak learning rate (after warm-up)"))
    momentum: float = field(default=0.9, metadata=option("SGD momentum (Adam: beta1)"))
    nesterov: bool = field(default=True, metadata=option("Nesterov momentum, for SGD"))
    weight_decay: float = field(default=5e-4, metadata=option("L2 weight decay"))
    schedule: str = field(default="cosine", metadata=option("learning-rate schedule", choices=SCHEDULES))
    warmup_epochs: float = field(default=1.0, metadata=option("linear warm-up of the learning rate, in epochs"))
    step_size: int = field(default=30, metadata=option("--schedule step: epochs between decays"))
    gamma: float = field(default=0.1, metadata=option("--schedule step/plateau: decay factor"))
    label_smoothing: float = field(default=0.0, metadata=option("label smoothing in [0, 1)"))
    class_weighted: bool = field(default=False, metadata=option("inverse-frequency class weights in the loss"))
    early_stopping: int = field(default=0, metadata=option("stop after N epochs without validation gain (0: off)"))
    subset: int | None = field(default=None, metadata=option("train on N class-balanced images (quick runs)"))
    val_fraction: float = field(
        default=0.1, metadata=option("share of the training set held out for validation (model selection)")
    )
    seed: int = field(default=0, metadata=option("seed of the split, the order and the augmentation"))
    amp: bool = field(
        default=True,
        metadata=option(
            "mixed-precision training: bf16/fp16 on CUDA, bf16 on CPUs with bf16 instructions (AVX-512 BF16, AMX); "
            "validation stays FP32"
        ),
    )
    device: str = field(default="auto", metadata=option("auto, cpu, cuda, cuda:N"))
    normalization: str = field(default="zscore", metadata=option("normalization", choices=NORMALIZATIONS))
    augment: bool = field(default=True, metadata=option("random crop and flip (no flip for MNIST digits)"))
    crop_padding: int = field(default=4, metadata=option("random-crop padding in pixels (0: no crop)"))
    rotate_degrees: float = field(default=0.0, metadata=option("random rotation, ± degrees", flag="--rotate"))
    shift_fraction: float = field(default=0.0, metadata=option("random shift, ± fraction of the size", flag="--shift"))
    erase: float = field(
        default=0.0, metadata=option("random erasing: probability an image gets one blanked rectangle (0: off)")
    )
    augmix: bool = field(
        default=False,
        metadata=option(
            "AugMix (all_ops=False): mixed chains of operations none of which is a condition of eval --corruptions, "
            "for accuracy under the camera's conditions",
            flag="--augmix",
        ),
    )
    init_from: str | None = field(
        default=None, metadata=option("checkpoint to start from; the head is replaced if classes differ")
    )
    trainable_blocks: int | None = field(
        default=None, metadata=option("with --init-from: train only the last N blocks")
    )
    resume: bool = field(default=False, metadata=option("continue from OUT/last.pt with the run's own options"))
    resume_override: bool = field(
        default=False, metadata=option("with --resume: accept options that change the model, data or schedule")
    )
    image_size: int | None = field(default=None, metadata=option("resize folder datasets to N×N"))
    skip_bad_images: bool = field(
        default=False,
        metadata=SKIP_BAD_IMAGES,
    )
    model_kwargs: dict = field(
        default_factory=dict,
        metadata=option("extra builder argument KEY=VALUE, e.g. leaky_relu=0.1", flag="--model-arg"),
    )
    recipe: str | None = field(
        default=None,
        metadata=option(
            "preset whose settings replace the defaults of every option not given explicitly: fast (airbench "
            "for CPUs: whitened_vgg, 12 epochs)"
        ),
    )
    micro_batch_size: int | None = field(
        default=None,
        metadata=option(
            "compute each batch in micro-batches of N (same gradient, per-micro-batch BatchNorm; faster on CPUs)"
        ),
    )
    bias_lr_scale: float = field(default=1.0, metadata=option("learning-rate multiple for BatchNorm shifts"))
    lookahead: bool = field(
        default=False, metadata=option("Lookahead weight averaging every 5 steps (airbench schedule)")
    )
    alternating_flip: bool = field(
        default=False, metadata=option("mirror each image on every other epoch instead of at random")
    )
    pad_mode: str = field(default="zeros", metadata=option("crop padding", choices=PAD_MODES))
    whiten_init: bool = field(default=False, metadata=option("fit the model's whitening stem to training patches"))
    whiten_bias_epochs: int = field(
        default=3, metadata=option("with --whiten-init: epochs the stem's bias trains before it freezes")
    )

    def __post_init__(self) -> None:
        def choice(name: str, value: str, options: tuple[str, ...]) -> None:
            if value not in options:
                close = difflib.get_close_matches(value, options, n=1)
                raise ConfigError(
                    f"{name} must be one of {', '.join(options)}, got {value!r}"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                )

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value}")
        if self.out is None:
            object.__setattr__(self, "out", f"runs/{self.model}")
        for f in dataclasses.fields(self):
            if f.metadata.get("choices"):
                choice(f.name, getattr(self, f.name), f.metadata["choices"])
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.micro_batch_size is not None and not 1 <= self.micro_batch_size <= self.batch_size:
            raise ConfigError(
                f"micro_batch_size must be in 1..batch_size ({self.batch_size}), got {self.micro_batch_size}"
            )
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
        return {
            k: (recorded[k], v)
            for k, v in self.to_dict().items()
            if k in recorded and k not in FREE_ON_RESUME and recorded[k] != v
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
