"""Confidence that means what it says, and "unknown" for what a model never saw: numpy only, for export (which fits
them on the validation split), the runtime (which applies them) and eval (which measures them).

- Calibration: temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017). One scalar T
  divides the logits before the softmax; T is the value that minimizes the negative log-likelihood on the
  validation split. The ranking, and so top-1, is unchanged. Then top-label beta calibration (Kull, Silva Filho
  & Flach, "Beta calibration", AISTATS 2017, applied to the top label as Gupta & Ramdas, "Top-label calibration",
  ICLR 2022, study it): the top-1 probability p gets the log-odds a·ln p − b·ln(1 − p) + c, fitted by logistic
  regression of "top-1 was right" on the validation split, and the other classes share what is left in their
  proportions. Platt scaling of the log-odds is the case a = b; freeing the two bends the map at both ends.
  Temperature alone left the first shipped mobilenet_mod at test ECE 0.025 (its softmax is underconfident in the
  middle bins and right at the top, which no single T straightens), and Platt brought it to 0.015. The AugMix
  mobilenet_mod kept 0.020 after Platt on its own validation split too, a bend Platt cannot follow; beta
  calibration scored lower in five-fold cross-validation on the validation split (INT8: 0.0121 against 0.0161), and
  on the test set came to 0.0167 (docs/confidence.md). Expected calibration error (ECE): 15
  equal-width confidence bins, the sample-weighted mean |accuracy − confidence| (Guo et al.'s definition).
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


IDENTITY = (1.0, 1.0, 0.0)  # beta calibration's (a, b, c) that leaves the softmax as it is


def top_label_map(fitted: dict) -> tuple[float, float, float]:
    """A manifest record's top-label map as beta calibration's (a, b, c). Bundles exported before it record
    Platt's (a, b) of the log-odds, which is (a, a, b) here; bundles before either record nothing."""
    if "beta" in fitted:
        return tuple(float(v) for v in fitted["beta"])
    if "platt" in fitted:
        a, b = fitted["platt"]
        return float(a), float(a), float(b)
    return IDENTITY


def _beta_features(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.stack([np.log(p), -np.log(1 - p), np.ones_like(p)], axis=1)


def calibrated(logits: np.ndarray, temperature: float = 1.0, beta: tuple[float, ...] = IDENTITY) -> np.ndarray:
    """Probabilities as the runtime reports them: softmax(logits / T), then the top-1 probability mapped by `beta`
    (a, b, c) and the other classes scaled to share the rest. The top-1 class stays the logits' argmax: where the
    mapping would put a runner-up above it, the top-1 keeps a tie with that runner-up instead."""
    probs = softmax(logits, temperature)
    if tuple(beta) == IDENTITY:
        return probs
    rows, top = np.arange(len(probs)), probs.argmax(axis=1)
    conf = probs[rows, top]
    runner_up = np.partition(probs, -2, axis=1)[:, -2] if probs.shape[1] > 1 else np.zeros_like(conf)
    mapped = 1 / (1 + np.exp(-np.clip(_beta_features(conf) @ np.asarray(beta, np.float64), -50, 50)))
    mapped = np.maximum(mapped, runner_up / np.maximum(1 - conf + runner_up, 1e-12))
    out = probs * ((1 - mapped) / np.maximum(1 - conf, 1e-12))[:, None]
    out[rows, top] = mapped
    return out.astype(probs.dtype, copy=False)


def fit_beta(
    logits: np.ndarray, labels: np.ndarray, temperature: float, tied: bool = False
) -> tuple[float, float, float]:
    """(a, b, c) of the logistic regression of "top-1 right" on (ln p, −ln(1 − p), 1) of the top-1 probability p:
    Newton's method (a convex problem; a few steps converge). A weak pull towards the identity keeps a split the
    model answers all right (or all wrong) from sending them to infinity. a and b stay at or above 0, so the map
    rises with p (the paper's rule: a feature whose weight comes out negative is dropped and the rest refitted).
    `tied` fits a = b, Platt scaling of the log-odds, which `tools/study_calibration.py` measures against it."""
    probs = softmax(logits, temperature)
    x = _beta_features(probs.max(axis=1))
    right = (probs.argmax(axis=1) == labels).astype(np.float64)
    if tied:
        x = np.stack([x[:, 0] + x[:, 1], x[:, 2]], axis=1)
    slopes, prior = (1 if tied else 2), np.array((1.0, 0.0) if tied else IDENTITY)
    free = list(range(len(prior)))
    while True:
        w = _logistic(x[:, free], right, prior[free])
        negative = [f for f, v in zip(free, w, strict=True) if f < slopes and v < 0]
        if not negative:
            break
        free.remove(negative[0])
    out = np.zeros(len(prior))
    out[free] = w
    a, b, c = (out[0], out[0], out[1]) if tied else out
    return float(a), float(b), float(c)


def _logistic(x: np.ndarray, right: np.ndarray, prior: np.ndarray) -> np.ndarray:
    w = prior.astype(np.float64).copy()
    for _ in range(50):
        q = 1 / (1 + np.exp(-np.clip(x @ w, -50, 50)))
        hessian = x.T @ (x * (q * (1 - q))[:, None]) + np.eye(len(w))
        step = np.linalg.solve(hessian, x.T @ (q - right) + (w - prior))
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


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


def reliability(probs: np.ndarray, labels: np.ndarray, top: np.ndarray, bins: int = BINS) -> dict:
    """Per confidence bin: count, mean confidence, accuracy; and the ECE they add up to. `top` is the class each
    answer names: the logits' argmax, as the runtime reports it, and not the probabilities' argmax, which names the
    runner-up where the top-label map left the two tied (2.7% of the AugMix mobilenet_mod's test images under Platt
    scaling)."""
    confidence, correct = probs[np.arange(len(probs)), top], top == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_conf = np.bincount(which, confidence, bins) / np.maximum(count, 1)
    accuracy = np.bincount(which, correct, bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(accuracy - mean_conf)) / max(len(labels), 1))
    return {"ece": ece, "count": count.tolist(), "confidence": mean_conf.tolist(), "accuracy": accuracy.tolist()}


def known_score(
    logits: np.ndarray, temperature: float = 1.0, score: str = "max_softmax", beta: tuple[float, ...] = IDENTITY
) -> np.ndarray:
    """Higher means more like the training classes."""
    if score == "energy":
        return temperature * _logsumexp(logits.astype(np.float64) / temperature)
    return calibrated(logits, temperature, beta).max(axis=1)


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
    """What export records for one graph, from its validation logits: T, the top-label beta calibration, the ECE
    before and after, and the calibrated top-1 probability below which the runtime says "unknown"."""
    temperature = fit_temperature(logits, labels)
    beta, top = fit_beta(logits, labels, temperature), logits.argmax(axis=1)
    return {
        "temperature": round(temperature, 6),
        "beta": [round(v, 6) for v in beta],
        "ece_before": reliability(softmax(logits), labels, top)["ece"],
        "ece_after": reliability(calibrated(logits, temperature, beta), labels, top)["ece"],
        "unknown_below": threshold_for(known_score(logits, temperature, beta=beta)),
    }
