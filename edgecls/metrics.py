"""Classification metrics from labels and scores, in numpy (no torch), for training, export and bench.

BCR (balanced classification rate) per class is the mean of its sensitivity and specificity, as the
CIFAR studies report it; the macro BCR averages it over classes.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def topk_accuracy(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == y_true[:, None], axis=1)))


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def classification_report(y_true: np.ndarray, scores: np.ndarray, classes: tuple[str, ...] | list[str]) -> dict:
    """Top-1/top-5, per-class precision/recall/F1/BCR, macro averages, best and worst classes."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = scores.argmax(1)
    n = len(classes)
    cm = confusion_matrix(y_true, y_pred, n)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    tn = cm.sum() - tp - fp - fn
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    specificity = _safe_div(tn, tn + fp)
    bcr = (recall + specificity) / 2
    per_class = [
        {
            "class": c,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "bcr": float(bcr[i]),
            "support": int(cm[i].sum()),
        }
        for i, c in enumerate(classes)
    ]
    ranked = sorted(per_class, key=lambda r: r["f1"], reverse=True)
    present = cm.sum(1) > 0
    return {
        "samples": int(len(y_true)),
        "top1": float(np.mean(y_pred == y_true)),
        "top5": topk_accuracy(y_true, scores, 5),
        "macro": {
            "precision": float(precision[present].mean()),
            "recall": float(recall[present].mean()),
            "f1": float(f1[present].mean()),
            "bcr": float(bcr[present].mean()),
        },
        "per_class": per_class,
        "best": [r["class"] for r in ranked[:5]],
        "worst": [r["class"] for r in ranked[::-1][:5]],
        "confusion_matrix": cm.tolist(),
    }
