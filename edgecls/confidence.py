"""Confidence that means what it says, and "unknown" for what a model never saw: numpy only, for export (which fits
them on the validation split), the runtime (which applies them) and eval (which measures them).

- Calibration: temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017). One scalar T
  divides the logits before the softmax; T is the value that minimizes the negative log-likelihood on the
  validation split. The ranking, and so top-1, is unchanged. Expected calibration error (ECE): 15 equal-width
  confidence bins, the sample-weighted mean |accuracy − confidence| (the paper's definition).
- Unknown: a score for "one of my classes", with a threshold chosen on the validation split to keep a stated share
  of in-distribution images (`RETENTION`). Two published scores are measured by `eval --ood-dataset`: the maximum
  softmax probability (Hendrycks & Gimpel, ICLR 2017), the floor to beat, and the energy score (Liu et al.,
  NeurIPS 2020): T·logsumexp(logits / T), which uses every logit and not only the largest. AUROC and the false
  positive rate at 95% true positive rate are the papers' figures.
"""

from __future__ import annotations

import numpy as np

BINS = 15
RETENTION = 0.95  # share of validation images the unknown threshold keeps as known
SCORES = ("max_softmax", "energy")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=1)
    return top + np.log(np.exp(z - top[:, None]).sum(axis=1))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits.astype(np.float64) / temperature
    return float(np.mean(_logsumexp(z) - z[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimizes the NLL of softmax(logits / T), within [0.25, 20]. The NLL is convex in 1/T (a
    log-sum-exp of linear functions minus a linear one), so a golden-section search over 1/T finds the minimum. The
    bound: a validation split the model separates perfectly pulls T towards 0, which would make every answer, an
    unknown object's included, certain."""
    lo, hi = 0.05, 4.0
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, labels, 1 / a), nll(logits, labels, 1 / b)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, labels, 1 / a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, labels, 1 / b)
    return float(2 / (lo + hi))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """Per confidence bin: count, mean confidence, accuracy; and the ECE they add up to."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_conf = np.bincount(which, confidence, bins) / np.maximum(count, 1)
    accuracy = np.bincount(which, correct, bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(accuracy - mean_conf)) / max(len(labels), 1))
    return {"ece": ece, "count": count.tolist(), "confidence": mean_conf.tolist(), "accuracy": accuracy.tolist()}


def known_score(logits: np.ndarray, temperature: float = 1.0, score: str = "max_softmax") -> np.ndarray:
    """Higher means more like the training classes."""
    if score == "energy":
        return temperature * _logsumexp(logits.astype(np.float64) / temperature)
    return softmax(logits, temperature).max(axis=1)


def threshold_for(scores: np.ndarray, retention: float = RETENTION) -> float:
    """The score below which an image is called unknown, keeping `retention` of these (validation) images."""
    return float(np.quantile(scores, 1 - retention))


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """The probability that a known image scores above an unknown one (ties count half): Mann–Whitney U / (n·m)."""
    both = np.concatenate([known, unknown])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[inverse]  # ties share their average rank
    u = ranks[: len(known)].sum() - len(known) * (len(known) + 1) / 2
    return float(u / (len(known) * len(unknown)))


def fpr_at_tpr(known: np.ndarray, unknown: np.ndarray, tpr: float = 0.95) -> float:
    """The share of unknown images still called known at the threshold that keeps `tpr` of the known ones."""
    return float(np.mean(unknown >= np.quantile(known, 1 - tpr)))


def fit(logits: np.ndarray, labels: np.ndarray) -> dict:
    """What export records for one graph, from its validation logits: T, the ECE before and after, and the
    threshold of the calibrated maximum softmax below which the runtime says "unknown"."""
    temperature = fit_temperature(logits, labels)
    return {
        "temperature": round(temperature, 6),
        "ece_before": reliability(softmax(logits), labels)["ece"],
        "ece_after": reliability(softmax(logits, temperature), labels)["ece"],
        "unknown_below": threshold_for(known_score(logits, temperature)),
    }
