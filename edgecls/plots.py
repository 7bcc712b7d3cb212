"""PNG figures people would rather see than read: curves, confusion matrices, example grids, histograms.

matplotlib is imported inside each function with the Agg backend, so importing this module is free and
nothing needs a display.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgecls.fileio import atomic_path

MATPLOTLIB_HINT = (
    "no PNG: matplotlib is not installed (on a Jetson `sudo apt install python3-matplotlib`, which the venv sees "
    "through --system-site-packages and which keeps JetPack's numpy; elsewhere pip install matplotlib)"
)


def missing() -> str | None:
    """Why no figure can be drawn here (None when it can): the runtime-only Jetson install brings no matplotlib, since
    its wheels would replace the numpy JetPack's OpenCV and TensorRT were built against."""
    import importlib.util

    return MATPLOTLIB_HINT if importlib.util.find_spec("matplotlib") is None else None


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return Path(path)


def training_curves(history: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Loss and top-1 (in percent, as the CLI prints it) per epoch; the best validation epoch is marked."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    dots = {"marker": "o", "markersize": 3}  # a 1-epoch run is one point per series, which a bare line would not draw
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train", **dots)
    ax_loss.plot(epochs, [h["val_loss"] for h in history], label="validation", **dots)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.plot(epochs, [100 * h["train_acc"] for h in history], label="train", **dots)
    val = [100 * h["val_acc"] for h in history]
    ax_acc.plot(epochs, val, label="validation", **dots)
    best = int(np.argmax(val))
    ax_acc.annotate(
        f"best {val[best]:.2f}%",
        (epochs[best], val[best]),
        xytext=(0, -14),
        textcoords="offset points",
        ha="center",
        fontsize=8,
    )
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def confusion_matrix_png(cm: np.ndarray, classes, path: str | os.PathLike, title: str = "Confusion matrix") -> Path:
    plt = pyplot()
    cm = np.asarray(cm)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(max(5, 0.55 * n + 2), max(4, 0.55 * n + 1.5)))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    if n <= 20:
        ax.set_xticks(range(n), classes, rotation=45, ha="right")
        ax.set_yticks(range(n), classes)
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return save_png(fig, path)


def example_grid(
    images: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    classes,
    path: str | os.PathLike,
    per_kind: int = 16,
    title: str = "",
) -> Path:
    """Two blocks of tiles, correctly classified examples then failures, each captioned 'pred (true)'.

    One mosaic image with captions rather than a matplotlib panel per example: 32 panels took 1.7 s a report, most of
    a quick training run's time (and of the study scripts')."""
    plt = pyplot()
    cols = 8
    rows_each = max(1, -(-per_kind // cols))
    height, width = images.shape[1:3]
    cell_h, cell_w = int(height * 1.7), int(width * 1.25)  # room above each tile for its two-line caption
    mosaic = np.full((2 * rows_each * cell_h, cols * cell_w, 3), 255, np.uint8)
    fig, ax = plt.subplots(figsize=(cols * 1.3, 2 * rows_each * 1.5))
    ax.axis("off")
    for block, (indices, colour) in enumerate(
        ((np.flatnonzero(preds == labels)[:per_kind], "green"), (np.flatnonzero(preds != labels)[:per_kind], "red"))
    ):
        for k, i in enumerate(indices):
            top = (block * rows_each + k // cols) * cell_h + cell_h - height
            left = (k % cols) * cell_w + (cell_w - width) // 2
            mosaic[top : top + height, left : left + width] = images[i]  # grey (…×1) broadcasts to RGB
            caption = f"{classes[preds[i]]}\n({classes[labels[i]]})"
            ax.text(left + width / 2, top - 1, caption, ha="center", va="bottom", fontsize=6, color=colour)
    ax.imshow(mosaic, interpolation="nearest")
    fig.suptitle((f"{title}\n" if title else "") + "correct (green) and failed (red): predicted (true)", fontsize=9)
    return save_png(fig, path)


def _plain_log_axis(plt, ax) -> None:
    """A log x axis with plain 1-2-5 tick labels (0.2, 0.5, 1, 2 ms), never 2×10⁻¹ labels running into each other."""
    from matplotlib.ticker import LogLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())


def latency_cdf(samples_ms: dict[str, np.ndarray], path: str | os.PathLike, title: str = "Latency") -> Path:
    """One cumulative curve per stage on a shared log axis (stages 100× apart stay readable and never hide each other),
    p50 and p99 marked on each; the legend sits below the plot."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for name, values in samples_ms.items():
        values = np.sort(np.asarray(values, dtype=float))
        if not len(values):
            continue
        share = np.arange(1, len(values) + 1) / len(values) * 100
        p50, p99 = np.percentile(values, 50), np.percentile(values, 99)
        (line,) = ax.step(
            values,
            share,
            where="post",
            label=f"{name.removesuffix('_ms').replace('_', ' ')}: p50 {p50:.3f} ms, p99 {p99:.3f} ms",
        )
        ax.plot([p50, p99], [50, 99], "o", color=line.get_color(), markersize=4)
    _plain_log_axis(plt, ax)
    ax.set(xlabel="milliseconds (log scale)", ylabel="% of frames at or below", ylim=(0, 100.5), title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    return save_png(fig, path)


def scatter(
    points: list[dict],
    x: str,
    y: str,
    label: str,
    path: str | os.PathLike,
    title: str,
    logx: bool = True,
    min_y_span: float | None = None,
    x_high: str | None = None,
) -> Path:
    """Points named in a legend (labels written beside the points lay over each other when two points are close, as
    a bench's rows often are); `x_high` draws a bar from each point to that key's value (e.g. p50 → p99), and a point
    with `unstable` set is drawn hollow and says so. `min_y_span` keeps a tiny spread (e.g. 0.2 accuracy points) from
    filling the whole axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    markers = "osD^vP*Xh<>"
    for i, p in enumerate(points):
        note = f"{p[label]} (unstable)" if p.get("unstable") else str(p[label])
        style = {"marker": markers[i // 10 % len(markers)], "linestyle": "none", "label": note}
        (dot,) = ax.plot(p[x], p[y], fillstyle="none" if p.get("unstable") else "full", **style)
        if x_high:
            ax.plot([p[x], p[x_high]], [p[y], p[y]], "-", color=dot.get_color(), alpha=0.6, linewidth=2)
    if points:
        ax.legend(fontsize=7, loc="best")
    if min_y_span and points:
        ys = [p[y] for p in points]
        middle, half = (max(ys) + min(ys)) / 2, max(min_y_span, max(ys) - min(ys)) / 2 * 1.2
        ax.set_ylim(middle - half, middle + half)
    if logx:
        _plain_log_axis(plt, ax)
    ax.set(xlabel=x, ylabel=y, title=title)
    ax.grid(alpha=0.3)
    return save_png(fig, path)


def series_png(series: dict[str, list[float]], path: str | os.PathLike, xlabel: str, ylabel: str, title: str) -> Path:
    """One line per named series, x = 1..n (e.g. validation accuracy per epoch of several runs)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, values in series.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    return save_png(fig, path)


def reliability_png(diagrams: dict[str, dict], path: str | os.PathLike, title: str = "Reliability") -> Path:
    """Accuracy against confidence per bin, one panel per named diagram (`confidence.reliability`), the diagonal
    being perfect calibration; each panel's ECE in its title."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(diagrams), figsize=(4.5 * len(diagrams), 4.2), squeeze=False)
    for ax, (name, d) in zip(axes[0], diagrams.items(), strict=True):
        bins = len(d["count"])
        centres = (np.arange(bins) + 0.5) / bins
        filled = np.array(d["count"]) > 0
        ax.bar(centres[filled], np.array(d["accuracy"])[filled], width=1 / bins, edgecolor="black", label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
        gap = {"color": "red", "markersize": 3, "label": "mean confidence"}  # bar top to dot: the miscalibration
        ax.plot(centres[filled], np.array(d["confidence"])[filled], "o", **gap)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"{name}: ECE {d['ece']:.3f}")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    return save_png(fig, path)


def corruption_png(report: dict, path: str | os.PathLike, title: str = "Camera conditions") -> Path:
    """Top-1 against severity, one line per corruption (`evaluate.corruption_report`), the clean top-1 dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, c in report["by_corruption"].items():
        ax.plot(report["severities"], c["top1"], "o-", label=f"{name} ({c['mean']:.1%})")
    ax.axhline(report["clean_top1"], color="black", linestyle="--", label=f"clean ({report['clean_top1']:.1%})")
    ax.set(xlabel="severity", ylabel="top-1", ylim=(0, 1), xticks=report["severities"])
    ax.set_title(f"mean over the suite {report['mean_top1']:.1%} on {report['images']:,} images", fontsize=9)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.suptitle(title, fontsize=9)
    return save_png(fig, path)
