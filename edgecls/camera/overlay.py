"""The annotated frame: prediction, top-3, per-stage milliseconds and frame age, readable on any background.

Text sits on a filled dark box (not an outline), so it reads the same on snow, sky or asphalt.
"""

from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


def overlay_lines(
    pred,
    timings: dict[str, float],
    fps: float,
    dropped: int,
    accuracy: tuple[float, int] | None,
    decision: str | None = None,
    truth: str | None = None,
) -> list[str]:
    """The overlay's text: top-3 (and "unknown?"), the decision over the last frames and, in a replay, the true label;
    per-stage milliseconds, frame age, FPS, and the replay's accuracy so far."""
    unknown = "unknown?   " if pred.unknown else ""  # below the bundle's threshold for "one of my classes"
    lines = [unknown + "   ".join(f"{name} {p:.0%}" for name, p in pred.topk[:3])]
    said = ([f"decision {decision}"] if decision else []) + ([f"true {truth}"] if truth else [])
    if said:
        lines.append("   ".join(said))
    lines += [
        f"preprocess {timings['preprocess_ms']:.2f} ms   inference {timings['inference_ms']:.2f} ms   "
        f"postprocess {timings['postprocess_ms']:.2f} ms",
        f"frame age {timings['frame_age_ms']:.1f} ms   {fps:.1f} FPS   dropped {dropped}",
    ]
    if accuracy:
        lines.append(f"replay accuracy {accuracy[0]:.2%} of {accuracy[1]}")
    return lines


def draw_overlay(image: np.ndarray, lines: list[str], scale: float | None = None) -> np.ndarray:
    """Draw `lines` top-left on a filled box, scaled to the frame (a 640-pixel-wide frame gets 0.5)."""
    scale = scale or max(0.35, image.shape[1] / 1280)
    thickness = max(1, round(scale * 2))
    sizes = [cv2.getTextSize(line, FONT, scale, thickness)[0] for line in lines]
    line_h = max(h for _, h in sizes) + round(10 * scale)
    width = max(w for w, _ in sizes) + round(16 * scale)
    height = line_h * len(lines) + round(8 * scale)
    box = image[:height, :width]
    box[:] = (box * 0.25).astype(image.dtype)  # darkened, so the picture still shows through a little
    for i, line in enumerate(lines):
        colour = (80, 255, 120) if i == 0 else (255, 255, 255)
        cv2.putText(image, line, (round(8 * scale), line_h * (i + 1)), FONT, scale, colour, thickness, cv2.LINE_AA)
    return image
