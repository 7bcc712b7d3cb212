"""Bundled weights: `weights/<model>.<dataset>.pt` plus a model card `weights/<model>.<dataset>.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgecls.jsonrecord import doc, read_record

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_DATASET = "cifar10"  # what a zoo name, and a checkpoint that names no dataset, were trained on


@dataclass(frozen=True)
class ModelCard:
    """What a bundled model is and how it was made: the training command, hardware and wall time, the split its
    checkpoint was chosen on, its accuracy, and what its exported graphs score (`tools/ship_weights.py` writes it)."""

    model: str
    dataset: str
    command: str = field(metadata=doc("the `edgecls train` command that made the weights"))
    hardware: str
    epochs_run: int
    best_epoch: int
    wall_time_s: float = field(metadata=doc("training wall time, seconds"))
    split: dict = field(metadata=doc("{seed, val_fraction, subset}: the validation split the checkpoint was chosen on"))
    val_top1: float
    test_top1: float
    test_top5: float
    training_log_tail: tuple[str, ...]
    data_sha256: dict = field(metadata=doc("sha256 of each dataset file it was trained and measured on"))
    weights_sha256: str
    weights_bytes: int
    export: dict | None = field(default=None, metadata=doc("what `edgecls export` scored and timed on its graphs"))
    images_per_s: float | None = None
    tta_top1: dict | None = None
    calibration_method: dict | None = field(default=None, metadata=doc("the INT8 method chosen on validation"))
    augmentations: tuple[str, ...] | None = field(default=None, metadata=doc("what training did to its images"))
    earlier_stages: tuple[dict, ...] | None = field(
        default=None,
        metadata=doc(
            "a fine-tune's history: the runs its weights started from, oldest first, each {command, epochs_run, "
            "wall_time_s, augmentations}; `command`, `epochs_run` and `wall_time_s` above are the last stage's"
        ),
    )


def read_card(path: Path) -> ModelCard:
    return read_record(ModelCard, json.loads(path.read_text()), lambda problem: ValueError(f"{path}: {problem}"))


def bundled_weights(model: str, dataset: str = DEFAULT_DATASET) -> Path | None:
    path = WEIGHTS_DIR / f"{model}.{dataset}.pt"
    return path if path.is_file() else None


def model_card(model: str, dataset: str = DEFAULT_DATASET) -> ModelCard | None:
    path = WEIGHTS_DIR / f"{model}.{dataset}.json"
    return read_card(path) if path.is_file() else None


def all_cards() -> dict[str, ModelCard]:
    return {p.stem: read_card(p) for p in sorted(WEIGHTS_DIR.glob("*.json"))}
