"""What the measuring commands are asked: `EvalOptions` (accuracy), `BaselineOptions` (classical baselines) and
`BenchOptions` (latency, throughput and accuracy per backend × precision).

Each option is declared once, here (the command line is built from these fields), and checked when the options are
made. Standard library only, so `edgecls --help` reads them without loading numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgecls.errors import ConfigError
from edgecls.names import BACKENDS, DATASETS, NORMALIZATIONS, PRECISIONS
from edgecls.options import DATA_DIR, PUBLIC_KEY, SKIP_BAD_IMAGES, check_at_least, check_choice, option, parse_size

BASELINE_METHODS = ("knn", "centroid")
BASELINE_METRICS = ("l1", "l2", "cosine")
REPORT_HELP = "write the report here (+ confusion/examples PNG)"


@dataclass(frozen=True)
class EvalOptions:
    """Accuracy on a test split: of a checkpoint through PyTorch, or of a bundle through its runtime."""

    source: str = field(
        metadata=option("checkpoint, run directory, zoo model with bundled weights, or an exported bundle")
    )
    dataset: str | None = field(default=None, metadata=option("default: the dataset the model was trained on"))
    data_dir: str | None = field(default=None, metadata=DATA_DIR)
    json_path: str | None = field(default=None, metadata=option(REPORT_HELP, flag="--json"))
    tta: bool = field(
        default=False,
        metadata=option(
            "checkpoints only: average 6 flipped/shifted views (an evaluation aid; deployed graphs see one view)"
        ),
    )
    skip_bad_images: bool = field(
        default=False,
        metadata=SKIP_BAD_IMAGES,
    )
    ood_dataset: str | None = field(
        default=None,
        metadata=option(
            'bundles only: a dataset of none of the model\'s classes; reports how well "unknown" separates its test '
            "split from the model's (AUROC, FPR at 95% TPR)"
        ),
    )
    ood_data_dir: str | None = field(default=None, metadata=option("where --ood-dataset lives (default: --data-dir)"))
    corruptions: bool = field(
        default=False,
        metadata=option(
            "bundles only: top-1 under the camera-condition suite (noise, blur, motion blur, contrast, brightness, "
            "dark, pixelate, JPEG; severities 1-5; edgecls.corruptions), with a PNG"
        ),
    )
    corruption_images: int = field(
        default=2000, metadata=option("the first N test images are corrupted (the clean top-1 beside them is theirs)")
    )

    def __post_init__(self) -> None:
        if self.dataset is not None:
            check_choice("--dataset", self.dataset, DATASETS)
        if self.ood_dataset is not None:
            check_choice("--ood-dataset", self.ood_dataset, DATASETS)
        check_at_least({"--corruption-images": self.corruption_images}, 1)


@dataclass(frozen=True)
class BaselineOptions:
    method: str = field(metadata=option("the baseline", choices=BASELINE_METHODS))
    k: int = field(default=1, metadata=option("neighbours, for knn"))
    metric: str = field(default="l2", metadata=option("distance", choices=BASELINE_METRICS))
    normalization: str = field(default="zscore", metadata=option("pixel scaling", choices=NORMALIZATIONS))
    dataset: str = field(default="cifar10", metadata=option("the data", choices=DATASETS))
    data_dir: str | None = field(default=None, metadata=DATA_DIR)
    subset: int | None = field(default=None, metadata=option("use N class-balanced training images"))
    json_path: str | None = field(default=None, metadata=option(REPORT_HELP, flag="--json"))

    def __post_init__(self) -> None:
        check_choice("METHOD", self.method, BASELINE_METHODS)
        check_choice("--metric", self.metric, BASELINE_METRICS)
        check_choice("--normalization", self.normalization, NORMALIZATIONS)
        check_choice("--dataset", self.dataset, DATASETS)
        check_at_least({"--k": self.k, "--subset": self.subset}, 1)


@dataclass(frozen=True)
class BenchOptions:
    backends: tuple[str, ...] = field(
        default=(),
        metadata=option("comma-separated backends (default: all available)", flag=("--backend", "--backends")),
    )
    precisions: tuple[str, ...] = field(
        default=PRECISIONS, metadata=option("comma-separated precisions", flag=("--precision", "--precisions"))
    )
    throughput_batch: int = field(default=64, metadata=option("batch size of the throughput (img/s) column"))
    iterations: int = field(default=300, metadata=option("timed batch-1 calls per row, hot and again paced"))
    warmup: int = field(default=30, metadata=option("untimed calls before the hot timing"))
    pace_ms: float = field(default=33.0, metadata=option("spacing of the paced calls (33 ms: a 30 fps camera)"))
    frame_size: str = field(default="640x480", metadata=option("camera frame WxH the end-to-end latency starts from"))
    threads: int | None = field(
        default=None,
        metadata=option(
            "host inference threads for every backend (default: each backend's batch-1 default; 0: all cores)"
        ),
    )
    data_dir: str | None = field(default=None, metadata=DATA_DIR)
    eval_images: int | None = field(default=None, metadata=option("accuracy on the first N test images (default all)"))
    json_path: str | None = field(
        default=None, metadata=option("write rows here (+ .md table and .png plot)", flag="--json")
    )
    public_key: str | None = field(default=None, metadata=PUBLIC_KEY)

    def __post_init__(self) -> None:
        for name in ("throughput_batch", "iterations"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an integer ≥ 1, got {getattr(self, name)!r}")
        check_at_least({"--warmup": self.warmup, "--pace-ms": self.pace_ms}, 0)
        parse_size(self.frame_size)
        unknown = [b for b in self.backends if b not in BACKENDS] + [p for p in self.precisions if p not in PRECISIONS]
        if unknown:
            raise ConfigError(
                f"unknown backend or precision {', '.join(map(repr, unknown))}: backends are {', '.join(BACKENDS)}, "
                f"precisions {', '.join(PRECISIONS)}"
            )
