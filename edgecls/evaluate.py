"""Evaluate an exported bundle on an `ImageSet` through its runtime: metrics JSON, confusion matrix and example PNGs.

No torch: a robot with the runtime alone evaluates the deployed graphs where they are deployed. A PyTorch model is
evaluated by `edgecls.train.evaluate`, which writes the same report.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgecls.console import console, progress
from edgecls.data.imageset import ImageSet
from edgecls.fileio import atomic_write_json
from edgecls.metrics import classification_report
from edgecls.plots import confusion_matrix_png, example_grid, missing


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
