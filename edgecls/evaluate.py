"""Evaluate an exported bundle on an `ImageSet` through its runtime: metrics JSON, confusion matrix and example PNGs.

No torch: a robot with the runtime alone evaluates the deployed graphs where they are deployed. A PyTorch model is
evaluated by `edgecls.train.evaluate`, which writes the same report.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgecls.confidence import IDENTITY, SCORES, auroc, calibrated, fpr_at_tpr, known_score, reliability, softmax
from edgecls.console import console, progress
from edgecls.data.imageset import ImageSet
from edgecls.fileio import atomic_write_json
from edgecls.metrics import classification_report
from edgecls.plots import confusion_matrix_png, corruption_png, example_grid, missing, reliability_png


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
    if "corruptions" in report:
        corruption_png(report["corruptions"], f"{stem}.corruptions.png", title=title)
    if "confidence" in report:
        diagrams = {
            "softmax (T = 1)": report["confidence"]["reliability_uncalibrated"],
            "calibrated (the bundle's)": report["confidence"]["reliability"],
        }
        reliability_png(diagrams, f"{stem}.reliability.png", title=title)
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


def classifier_logits(classifier, data: ImageSet, batch_size: int = 500) -> np.ndarray:
    """The bundle's logits for every image, through its own preprocessing and backend."""
    return classifier_outputs(classifier, data, batch_size)[0]


def classifier_outputs(classifier, data: ImageSet, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's logits for every image, through its own preprocessing and backend, and how much like the
    training classes each is by the bundle's own unknown score (`Classifier.known_score`)."""
    batches = progress(
        classifier.preprocessor.batches(data.images, batch_size),
        f"evaluating on {data.name}",
        -(-len(data) // batch_size),
    )
    logits, known = [], []
    for batch in batches:
        scores, features = classifier.infer_with_features(batch)
        logits.append(scores)
        known.append(classifier.known_score(scores, features))
    return np.concatenate(logits), np.concatenate(known)


def evaluate_classifier(
    classifier,
    data: ImageSet,
    batch_size: int = 500,
    out_json: str | os.PathLike | None = None,
    header: dict | None = None,
    ood: ImageSet | None = None,
    corruption_images: int | None = None,
) -> dict:
    """The deployed path: the bundle's own preprocessing and backend (e.g. the INT8 ONNX graph), not PyTorch; with
    the confidence the runtime reports (the bundle's temperature) measured, with `ood` (images of none of the
    classes) how well "unknown" separates them, and with `corruption_images` the top-1 of that many test images
    under the camera-condition suite."""
    scores, known = classifier_outputs(classifier, data, batch_size)
    report = {**(header or {}), **classification_report(data.labels, scores, data.classes)}
    report["confidence"] = confidence_report(scores, data.labels, classifier.temperature, classifier.beta)
    if ood is not None:
        report["ood"] = ood_report(
            (scores, known), classifier_outputs(classifier, ood, batch_size), classifier, ood.name
        )
    if corruption_images:
        report["corruptions"] = corruption_report(classifier, data, scores, corruption_images, batch_size)
    if out_json:
        write_report(report, scores, data, out_json)
    return report


def confidence_report(logits: np.ndarray, labels: np.ndarray, temperature: float, beta=IDENTITY) -> dict:
    """ECE of the confidence the runtime reports (the bundle's calibration), and of the raw softmax beside it."""
    top = logits.argmax(axis=1)
    after = reliability(calibrated(logits, temperature, beta), labels, top)
    before = reliability(softmax(logits), labels, top)
    return {
        "beta": list(beta),
        "temperature": temperature,
        "ece": after["ece"],
        "ece_uncalibrated": before["ece"],
        "reliability": after,
        "reliability_uncalibrated": before,
    }


def ood_report(known: tuple, unknown: tuple, classifier, name: str) -> dict:
    """Each score's AUROC and FPR at 95% TPR (known = the test set, positive), and the share of each set the bundle's
    threshold calls unknown. `known` and `unknown` are (logits, the bundle's own score) of each set; `score`, `auroc`
    and `fpr_at_95_tpr` are those of the score the runtime uses (`Classifier.unknown_score`), the softmax scores are
    measured beside it."""
    t, beta = classifier.temperature, classifier.beta
    values = {score: [known_score(x[0], t, score, beta) for x in (known, unknown)] for score in SCORES}
    values[classifier.unknown_score] = [known[1], unknown[1]]
    scores = {score: {"auroc": auroc(a, b), "fpr_at_95_tpr": fpr_at_tpr(a, b)} for score, (a, b) in values.items()}
    deployed = scores[classifier.unknown_score]
    report = {
        "dataset": name,
        "images": len(unknown[0]),
        "score": classifier.unknown_score,
        "auroc": deployed["auroc"],
        "fpr_at_95_tpr": deployed["fpr_at_95_tpr"],
        "scores": scores,
    }
    if classifier.unknown_below is not None:
        report["threshold"] = classifier.unknown_below
        report["known_called_unknown"] = float(np.mean(classifier.unknown(known[1])))
        report["unknown_called_unknown"] = float(np.mean(classifier.unknown(unknown[1])))
    return report


def corruption_report(classifier, data: ImageSet, clean_scores: np.ndarray, images: int, batch_size: int = 500) -> dict:
    """Top-1 of the first `images` test images under every corruption and severity of `edgecls.corruptions`, through
    the bundle's own preprocessing and backend; `mean_top1` is over all of them (CIFAR-10-C's protocol)."""
    from edgecls.corruptions import CONSTANTS, SEVERITIES, SUITE, corrupt

    subset = replace(
        data, images=data.images[:images], labels=data.labels[:images], paths=data.paths and data.paths[:images]
    )
    by_corruption = {}
    for name in CONSTANTS:
        top1 = []
        for severity in SEVERITIES:
            shaken = replace(subset, images=corrupt(subset.images, name, severity), name=f"{name}:{severity}")
            top1.append(float(np.mean(classifier_logits(classifier, shaken, batch_size).argmax(1) == subset.labels)))
        by_corruption[name] = {"top1": top1, "mean": float(np.mean(top1))}
    return {
        "suite": SUITE,
        "images": len(subset.labels),
        "severities": list(SEVERITIES),
        "clean_top1": float(np.mean(clean_scores[:images].argmax(1) == subset.labels)),
        "mean_top1": float(np.mean([c["mean"] for c in by_corruption.values()])),
        "by_corruption": by_corruption,
    }
