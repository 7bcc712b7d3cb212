"""A fixed suite of camera conditions at five severities, applied to uint8 images before the runtime's preprocessing.

The constants are those of CIFAR-10-C (Hendrycks & Dietterich 2019, `make_cifar_c.py`) for the corruptions it
defines, applied to the dataset's own images (32×32 for CIFAR) as CIFAR-10-C was made; `dark` (a robot at dusk, a
tunnel) is this suite's addition, a linear scale of the pixel values. `pixelate` stands for a low-resolution or
digitally zoomed sensor, `brightness` for over-exposure.

Written here with numpy and OpenCV rather than taken from `imagecorruptions` (the maintained package of the
ImageNet-C code): it carries ImageNet-C's constants, tuned for 224-pixel images (its Gaussian noise at severity 1 is
CIFAR-10-C's severity 5), needs scikit-image and SciPy, which the runtime does not install, and its motion blur is a
re-implementation of ImageMagick's anyway. Ours is too: a one-sided Gaussian streak of CIFAR-10-C's (radius, sigma)
at a random angle in ±45°, the kernel ImageMagick's `-motion-blur` draws, applied with `cv2.filter2D`.

Every corruption is deterministic for a seed: the same images, severity and seed give the same pixels, so a figure
can be re-measured (eval) and replayed (camera) exactly.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgecls.errors import ConfigError

SEVERITIES = (1, 2, 3, 4, 5)
SUITE = "edgecls-c/1"
CONSTANTS = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # σ of additive noise, pixel values in [0, 1]
    "shot_noise": (500, 250, 100, 75, 50),  # photons at full scale (Poisson)
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # disk radius, its anti-alias σ
    "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),  # streak radius, σ
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # kept share of the deviation from the image's mean
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "dark": (0.6, 0.45, 0.35, 0.25, 0.15),  # pixel values scaled by this
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # side scaled down by this, then back up
    "jpeg": (80, 65, 58, 50, 40),  # JPEG quality
}
CORRUPTIONS = tuple(CONSTANTS)


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """N×H×W×C uint8 images (RGB or grey) under `name` at `severity` (1–5): a new array, the input untouched."""
    _check(name, severity)
    c = CONSTANTS[name][severity - 1]
    rng = np.random.default_rng([seed, CORRUPTIONS.index(name), severity])
    x = images.astype(np.float32) / 255.0
    if name == "gaussian_noise":
        x = x + rng.normal(scale=c, size=x.shape).astype(np.float32)
    elif name == "shot_noise":
        x = rng.poisson(x * c).astype(np.float32) / c
    elif name == "contrast":
        means = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - means) * c + means
    elif name == "dark":
        x = x * c
    elif name == "brightness":
        x = np.stack([_brighter(image, c) for image in x])
    else:
        return np.stack([_per_image(name, c, image, rng) for image in images]).reshape(images.shape)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def parse_corruption(text: str) -> tuple[str, int]:
    """'motion_blur:3' → ('motion_blur', 3)."""
    name, _, severity = text.partition(":")
    if not severity.isdigit():
        raise ConfigError(f"a corruption is NAME:SEVERITY (motion_blur:3), got {text!r}")
    _check(name, int(severity))
    return name, int(severity)


def _check(name: str, severity: int) -> None:
    if name not in CONSTANTS:
        raise ConfigError(f"unknown corruption {name!r}: the suite has {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ConfigError(f"corruption severity must be 1 to 5, got {severity}")


def _brighter(image: np.ndarray, c: float) -> np.ndarray:
    if image.shape[2] == 1:
        return image + c
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0.0, 1.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _per_image(name: str, c, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if name == "jpeg":
        bgr = image[..., ::-1] if image.shape[2] == 3 else image
        _, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, c])
        decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        return decoded[..., ::-1] if image.shape[2] == 3 else decoded
    if name == "pixelate":
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, int(w * c)), max(1, int(h * c))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    kernel = _disk(*c) if name == "defocus_blur" else _streak(*c, angle=rng.uniform(-45.0, 45.0))
    blurred = cv2.filter2D(image.astype(np.float32) / 255.0, -1, kernel, borderType=cv2.BORDER_REFLECT)
    return (np.clip(blurred, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """CIFAR-10-C's defocus kernel: a disk of `radius`, softened by a Gaussian of σ `alias_blur`."""
    span = np.arange(-8, 9) if radius <= 8 else np.arange(-int(radius), int(radius) + 1)
    xs, ys = np.meshgrid(span, span)
    disk = (xs**2 + ys**2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    ksize = (3, 3) if radius <= 8 else (5, 5)
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def _streak(radius: int, sigma: float, angle: float) -> np.ndarray:
    """A one-sided Gaussian streak from the centre, `angle` degrees from horizontal: ImageMagick's motion blur."""
    kernel = np.zeros((2 * radius + 1, 2 * radius + 1), np.float32)
    dx, dy = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    for i in range(radius + 1):
        kernel[round(radius + i * dy), round(radius + i * dx)] += np.exp(-(i**2) / (2 * sigma**2))
    return kernel / kernel.sum()
