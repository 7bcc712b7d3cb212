"""Where annotated frames go besides the log: a window when there is a screen, a recording that is never broken."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import cv2
import numpy as np


def gui_unavailable() -> str | None:
    """Why `cv2.imshow` cannot work here, or None."""
    gui = next(
        (
            line.split(":", 1)[1].strip()
            for line in cv2.getBuildInformation().splitlines()
            if line.strip().startswith("GUI:")
        ),
        "NONE",
    )
    if gui.upper() == "NONE":
        return "this OpenCV has no GUI (opencv-python-headless)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display ($DISPLAY is not set)"
    return None


class Recorder:
    """An annotated video written under a hidden temporary name and moved onto `path` when closed.

    A crash inside the loop still closes it (the caller's `finally`), so the file holds every frame so far;
    a killed process leaves only the hidden temporary file, never a broken file under the requested name.
    """

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(
            f".{self.path.stem}.write-{os.getpid()}-{secrets.token_hex(4)}{self.path.suffix}"
        )
        self.fps = fps or 30.0
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            h, w = frame.shape[:2]
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> Path | None:
        if self.writer is None:
            return None
        self.writer.release()
        self.writer = None
        if self.frames == 0:
            self.tmp.unlink(missing_ok=True)
            return None
        os.replace(self.tmp, self.path)
        return self.path
