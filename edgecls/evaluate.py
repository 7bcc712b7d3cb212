"""Evaluate a PyTorch model or an exported bundle on an `ImageSet`: metrics JSON, confusion matrix and example PNGs.

torch is imported only by the functions that run PyTorch models: a robot with the runtime alone (no torch) evaluates
the deployed graphs of a bundle with `evaluate_classifier`, where they are deployed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgecls.console import console, progress
from edgecls.data.imageset import ImageSet
from edgecls.fileio import atomic_write_json
from edgecls.imaging import ImageInput, Policy
from edgecls.metrics import classification_report
from edgecls.plots import confusion_matrix_png, example_grid, missing
from edgecls.runtime.preprocess import Preprocessor

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgecls.imaging import Normalization


def tta_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Six views, as airbench evaluates: the image and its mirror (weight 1/2), and both shifted by one pixel
    up-left and down-right with reflection (1/4 each pair). An evaluation aid only: deployed graphs see one view."""
    import torch.nn.functional as F

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(v) + model(v.flip(-1)))

    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = 0.5 * (mirrored(padded[..., :h, :w]) + mirrored(padded[..., 2:, 2:]))
    return 0.5 * mirrored(x) + 0.5 * shifted


def predict_scores(
    model: nn.Module,
    data: ImageSet,
    normalization: Normalization,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    tta: bool = False,
) -> np.ndarray:
    """Scores through the runtime's own preprocessing (`Preprocessor`), as the deployed graph will see the images."""
    import torch

    model = model.to(device).eval()
    prep = Preprocessor(ImageInput(data.input_size, data.in_channels), Policy(normalization))
    forward = (lambda x: tta_logits(model, x)) if tta else model
    batches = progress(prep.batches(data.images, batch_size), f"evaluating on {data.name}", -(-len(data) // batch_size))
    with torch.no_grad():
        return np.concatenate([forward(torch.from_numpy(batch).to(device)).float().cpu().numpy() for batch in batches])


def write_report(report: dict, scores: np.ndarray, data: ImageSet, out_json: str | os.PathLike) -> Path:
    """Write the JSON report and, beside it, `<stem>.confusion.png` and `<stem>.examples.png`."""
    out_json = Path(out_json)
    stem = out_json.with_suffix("")
    atomic_write_json(out_json, report)
    title = report_title(report, data)
    no_png = missing()
    if no_png:
        console.print(no_png)
        return out_json
    confusion_matrix_png(np.array(report["confusion_matrix"]), data.classes, f"{stem}.confusion.png", title=title)
    example_grid(data.images, data.labels, scores.argmax(1), data.classes, f"{stem}.examples.png", title=title)
    return out_json


def report_title(report: dict, data: ImageSet) -> str:
    """What the picture shows: model, engine and precision, views, data and the score."""
    engine = " ".join(str(report[k]) for k in ("backend", "precision") if report.get(k))
    views = ", 6-view TTA" if report.get("tta") else ""
    return (
        f"{report.get('model', 'model')} ({engine or 'PyTorch'}{views}) on {data.name}, {len(data):,} images: "
        f"top-1 {report['top1']:.2%}"
    )


SCHEMA = "edgecls.eval/1"


def report_header(model: str, source: str, backend: str, precision: str, data: ImageSet, **extra) -> dict:
    """What a report was measured on, so reports from many runs and machines can be joined."""
    from datetime import datetime, timezone

    from edgecls.runtime.host import host_info

    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "source": source,
        "backend": backend,
        "precision": precision,
        "dataset": data.name,
        "samples": len(data),
        "preprocessing": "the runtime's Preprocessor (centre square, area reduction, normalization)",
        **extra,
        "host": host_info(),
    }


def evaluate_model(
    model: nn.Module,
    data: ImageSet,
    normalization: Normalization,
    device: str = "cpu",
    out_json: str | os.PathLike | None = None,
    tta: bool = False,
    header: dict | None = None,
) -> dict:
    scores = predict_scores(model, data, normalization, device=device, tta=tta)
    report = {**(header or {}), **classification_report(data.labels, scores, data.classes), "tta": tta}
    if out_json:
        write_report(report, scores, data, out_json)
    return report


def evaluate_classifier(
    classifier,
    data: ImageSet,
    batch_size: int = 500,
    out_json: str | os.PathLike | None = None,
    header: dict | None = None,
) -> dict:
    """The deployed path: the bundle's own preprocessing and backend (e.g. the INT8 ONNX graph), not PyTorch."""
    batches = progress(
        classifier.preprocessor.batches(data.images, batch_size),
        f"evaluating on {data.name}",
        -(-len(data) // batch_size),
    )
    scores = np.concatenate([classifier.infer(batch) for batch in batches])
    report = {**(header or {}), **classification_report(data.labels, scores, data.classes)}
    if out_json:
        write_report(report, scores, data, out_json)
    return report
