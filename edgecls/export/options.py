"""What `edgecls export` is asked to do: `ExportOptions`, and `ForeignOptions` for a model edgecls did not train.

Each option is declared once, here, with its help (the command line is built from these fields), and checked when
the options are made: a bad combination fails before a file is written, not after the CPU graph is quantized.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgecls.errors import ConfigError
from edgecls.names import COLORS, CPU_CALIB_METHODS, EXPORT_TARGETS, TENSORRT_CALIB_METHODS
from edgecls.options import DATA_DIR, option


@dataclass(frozen=True)
class ForeignOptions:
    """What a model edgecls did not train must be told: its weights, preprocessing, classes and data."""

    weights: str | None = field(
        default=None,
        metadata=option(
            "your own module: its state dict (.pt/.pth; bare, or under state_dict/model_state_dict/model; "
            "`module.` prefixes handled)"
        ),
    )
    model_args: dict = field(
        default_factory=dict,
        metadata=option("your own module: builder argument KEY=VALUE (repeatable)", flag="--model-arg"),
    )
    mean: tuple[float, ...] | None = field(
        default=None,
        metadata=option("your own model: per-channel mean, torchvision's 0–1 convention (ImageNet: 0.485,0.456,0.406)"),
    )
    std: tuple[float, ...] | None = field(
        default=None, metadata=option("your own model: per-channel std, 0–1 convention (ImageNet: 0.229,0.224,0.225)")
    )
    color: str = field(
        default="rgb", metadata=option("your own model: channel order it was trained on", choices=COLORS)
    )
    size: int | None = field(
        default=None, metadata=option("your own model: input side in pixels (read from a fixed ONNX input)")
    )
    resize_shorter: int | None = field(
        default=None,
        metadata=option(
            "your own model: trained with 'resize the shorter side to N, centre-crop --size' (ImageNet: 256); "
            "default: the whole centre square"
        ),
    )
    labels: str | None = field(
        default=None,
        metadata=option("your own model: class names, one per line in output order (default: the dataset's)"),
    )
    classes: tuple[str, ...] | None = field(
        default=None, metadata=option("the class names themselves (the Python API)", cli=False)
    )
    dataset: str | None = field(
        default=None,
        metadata=option(
            "calibration, gate and test data (default: the model's own; your own models: cifar10, cifar100, "
            "mnist, fashion-mnist, folder)"
        ),
    )
    name: str | None = field(
        default=None, metadata=option("your own model: its name in the bundle (default: NAME or the file's stem)")
    )

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise ConfigError(f"--color must be one of {', '.join(COLORS)}, got {self.color!r}")
        if self.size is not None and self.size < 1:
            raise ConfigError(f"--size must be ≥ 1, got {self.size}")

    def given(self) -> list[str]:
        """The flags set that only a model edgecls did not train can take."""
        flags = {
            "--weights": self.weights,
            "--model-arg": self.model_args,
            "--mean": self.mean,
            "--std": self.std,
            "--size": self.size,
            "--resize-shorter": self.resize_shorter,
            "--labels": self.labels,
            "--color": self.color != "rgb",
            "--name": self.name,
        }
        return [flag for flag, value in flags.items() if value]


@dataclass(frozen=True)
class ExportOptions:
    """How to export: which graphs, calibrated and gated how, written where."""

    fp16: bool = field(default=False, metadata=option("add model.fp16.onnx", flag="--fp16"))
    int8: bool = field(default=False, metadata=option("add CIFAR-calibrated INT8 Q/DQ graphs", flag="--int8"))
    out: str | None = field(default=None, metadata=option("bundle directory (default: exports/MODEL)"))
    data_dir: str | None = field(default=None, metadata=DATA_DIR)
    calib_images: int = field(default=1024, metadata=option("training images for calibration, stratified by class"))
    calib_method: str | None = field(
        default=None,
        metadata=option(
            "INT8 calibration (default: the model card's choice for bundled weights, else minmax; percentile is "
            "ONNX Runtime's only, --target cpu)",
            choices=CPU_CALIB_METHODS,
        ),
    )
    target: str = field(
        default="all",
        metadata=option(
            "the INT8 graphs' target: ONNX Runtime on CPUs (U8S8), TensorRT (S8S8 + cache + engines) or both",
            choices=EXPORT_TARGETS,
        ),
    )
    max_accuracy_drop: float = field(default=1.0, metadata=option("INT8 may lose at most this many points vs FP32"))
    allow_accuracy_drop: bool = field(
        default=False,
        metadata=option("write the bundle even if INT8 fails the validation gate", flag="--allow-accuracy-drop"),
    )
    eval_images: int | None = field(default=None, metadata=option("evaluate on the first N test images only"))
    exclude_nodes: tuple[str, ...] = field(
        default=(),
        metadata=option("ONNX node kept in float in the INT8 graphs (repeatable)", flag="--exclude-node"),
    )
    seed: int = field(default=0, metadata=option("seed of the calibration sample", cli=False))
    foreign: ForeignOptions | None = field(
        default=None,
        metadata=option("weights, preprocessing, classes and data of a model trained elsewhere", cli=False),
    )
    calib_dir: str | None = field(
        default=None,
        metadata=option(
            "unlabelled images of the scene: INT8 calibration, and (without --dataset) a gate on top-1 agreement "
            "with FP32 on held-out ones"
        ),
    )
    tensorrt8: bool = field(
        default=False,
        metadata=option(
            "also write the INT8 graph TensorRT 8.6 (JetPack 6.0) can build: ModelOpt with FP32 layers, opset 17",
            flag="--tensorrt8",
        ),
    )

    @property
    def tensorrt_int8(self) -> bool:
        """Whether the export makes a TensorRT INT8 graph (ModelOpt's)."""
        return self.int8 and self.target != "cpu"

    def __post_init__(self) -> None:
        if self.target not in EXPORT_TARGETS:
            raise ConfigError(f"--target must be one of {', '.join(EXPORT_TARGETS)}, got {self.target!r}")
        if self.calib_method is not None and self.calib_method not in CPU_CALIB_METHODS:
            raise ConfigError(
                f"--calib-method must be one of {', '.join(CPU_CALIB_METHODS)}, got {self.calib_method!r}"
            )
        if self.tensorrt_int8 and self.calib_method not in (None, *TENSORRT_CALIB_METHODS):
            raise ConfigError(
                f"--calib-method {self.calib_method} is ONNX Runtime's only: NVIDIA ModelOpt calibrates the TensorRT "
                f"graph with {' or '.join(TENSORRT_CALIB_METHODS)}. Pass one of those, or --target cpu"
            )
        if self.calib_images < 1:
            raise ConfigError(f"--calib-images must be ≥ 1, got {self.calib_images}")
        if self.max_accuracy_drop < 0:
            raise ConfigError(f"--max-accuracy-drop must be ≥ 0 points, got {self.max_accuracy_drop}")
        if self.eval_images is not None and self.eval_images < 1:
            raise ConfigError(f"--eval-images must be ≥ 1, got {self.eval_images}")
        if self.tensorrt8 and not self.tensorrt_int8:
            raise ConfigError(
                "--tensorrt8 adds a TensorRT INT8 graph: pass it with --int8 and --target tensorrt or all"
            )
