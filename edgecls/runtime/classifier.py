"""`Classifier`: the few lines robot code needs.

    clf = Classifier.load("exports/mobilenet_mod")        # best backend here; says which and why
    pred = clf.predict(frame)                             # OpenCV BGR frame, any size
    if not pred.unknown: ...                             # calibrated confidence, unknown below the bundle's threshold

`predict` and `predict_batch` are thread-safe: preprocessing runs in the caller's thread, inference is
serialized by a lock, so a capture thread and a control thread can share one Classifier.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from edgecls.bundle import Bundle
from edgecls.confidence import IDENTITY, calibrated, top_label_map
from edgecls.errors import BundleError, InputError
from edgecls.feature_distance import FeatureDistance
from edgecls.feature_distance import known_score as feature_known_score
from edgecls.runtime.backends import Backend, BackendInfo, choose, create_backend
from edgecls.runtime.options import DEFAULT_TOP_K
from edgecls.runtime.preprocess import Preprocessor


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    confidence: float
    topk: tuple[tuple[str, float], ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    logits: np.ndarray | None = field(default=None, repr=False, compare=False)
    unknown: bool = False  # not one of the bundle's classes, by its unknown score (never, for a bundle without one)


@runtime_checkable
class Predictor(Protocol):
    """What robot code calls: a `Classifier` in this process, or a `RemoteClassifier` of a served bundle."""

    def predict(self, frame: np.ndarray, color: str = "bgr") -> Prediction: ...
    def predict_batch(self, frames: Sequence[np.ndarray], color: str = "bgr") -> list[Prediction]: ...


def ranked(
    logits: np.ndarray, k: int, temperature: float = 1.0, beta: tuple[float, ...] = IDENTITY
) -> tuple[np.ndarray, np.ndarray]:
    """N×classes logits → each row's k best class indices, best first (by the logits), and their probabilities as
    the bundle calibrated them (`edgecls.confidence.calibrated`: its temperature and top-label beta calibration)."""
    # stable: INT8 logits tie exactly (quantized outputs); the lowest class index wins, as argmax in eval does
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(calibrated(logits, temperature, beta), order, axis=1)


class Classifier:
    def __init__(self, bundle: Bundle, backend: Backend, reason: str = "", top_k: int = DEFAULT_TOP_K):
        self.bundle = bundle
        self.backend = backend
        self.reason = reason
        self.classes = bundle.classes
        self.top_k = min(top_k, len(self.classes))
        self.preprocessor = Preprocessor(bundle.input, bundle.preprocess)
        fitted = (bundle.manifest.confidence or {}).get("files", {}).get(backend.source_graph) or {}
        self.temperature = float(fitted.get("temperature", 1.0))
        self.beta = top_label_map(fitted)
        self.unknown_below: float | None = fitted.get("unknown_below")
        self.unknown_score = "max_softmax"
        self.distance: FeatureDistance | None = None
        features = fitted.get("features")
        entry = bundle.find("feature-distance", "")
        if features and entry is not None and backend.has_features:
            self.distance = FeatureDistance.from_bytes(bundle.read_verified(entry))
            self.standardize, self.unknown_below = features["standardize"], features["unknown_below"]
            self.unknown_score = "feature_distance"
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        bundle_dir: str | os.PathLike,
        backend: str = "auto",
        precision: str = "auto",
        device: str = "auto",
        top_k: int = DEFAULT_TOP_K,
        threads: int | None = None,
        public_key=None,
    ) -> Classifier:
        """`threads`: host threads for CPU inference (None: the backend's measured default for batch 1, 0: all cores).
        `public_key` (Ed25519 key, PEM bytes or .pub path; default $EDGECLS_PUBLIC_KEY): load only bundles it signed."""
        bundle = Bundle.open(bundle_dir, public_key=public_key)
        name, precision, device, reason = choose(bundle, backend, precision, device)
        return cls(bundle, create_backend(bundle, name, precision, device, threads), reason, top_k)

    def close(self) -> None:
        """Free the backend's device memory now, rather than when the process ends."""
        with self._lock:
            self.backend.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def info(self) -> BackendInfo:
        return self.backend.describe()

    def describe(self) -> str:
        info = self.info
        threads = f", {info.threads} thread{'s' * (info.threads != 1)}" if info.threads else ""
        engine = f"{info.name}/{info.device} {info.precision} ({info.detail}{threads})"
        return f"{self.bundle.manifest.model} on {engine} — {self.reason}"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Normalized N×C×H×W float32 → logits, serialized across threads."""
        return self.infer_with_features(batch)[0]

    def infer_with_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Normalized N×C×H×W float32 → (logits, the graph's `features` or None), serialized across threads."""
        with self._lock:
            return self.backend.infer_with_features(batch)

    def rank(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N×classes logits → the top-k class indices of each row, best first, and their probabilities (N×k each)."""
        if logits.ndim != 2 or logits.shape[1] != len(self.classes):
            raise BundleError(
                f"{self.bundle.root}: the model gives {logits.shape[-1]} scores per image but the manifest names "
                f"{len(self.classes)} classes; the bundle is inconsistent, re-export it"
            )
        return ranked(logits, self.top_k, self.temperature, self.beta)

    def known_score(self, logits: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        """Per row, how much like the training classes (higher: more), by the score the bundle chose for this graph
        (`unknown_score`): minus the standardized feature distance, or the calibrated top-1 probability."""
        if self.distance is not None:
            if features is None:
                raise BundleError(f"{self.bundle.root}: the graph gave no `features` output; re-export the bundle")
            return feature_known_score(self.distance.distances(features), self.standardize)
        return calibrated(logits, self.temperature, self.beta).max(axis=1).astype(np.float64)

    def unknown(self, known: np.ndarray) -> np.ndarray:
        """Which `known_score`s are below the bundle's threshold for "one of my classes" (none, for a bundle without
        one): the in-process and the served answers, and eval's, decide it here."""
        if self.unknown_below is None:
            return np.zeros(np.shape(known), bool)
        return np.asarray(known, np.float64) < self.unknown_below

    def _postprocess(self, logits: np.ndarray, features: np.ndarray | None = None) -> list[tuple]:
        """(label, index, confidence, top-k, unknown) of each row."""
        order, probs = self.rank(logits)
        unknown = self.unknown(self.known_score(logits, features)).tolist()
        return [
            (
                self.classes[int(row[0])],
                int(row[0]),
                float(p[0]),
                tuple((self.classes[int(i)], float(q)) for i, q in zip(row, p, strict=True)),
                doubtful,
            )
            for p, row, doubtful in zip(probs, order, unknown, strict=True)
        ]

    def predict_tensor(self, batch: np.ndarray, preprocess_ms: float = 0.0) -> list[Prediction]:
        """Classify an already preprocessed N×C×H×W float32 batch (the bundle's normalization applied)."""
        t0 = time.perf_counter()
        logits, features = self.infer_with_features(batch)
        t1 = time.perf_counter()
        fields = self._postprocess(logits, features)
        n = len(batch)
        timing = {
            "preprocess": preprocess_ms / n,
            "inference": (t1 - t0) * 1e3 / n,
            "postprocess": (time.perf_counter() - t1) * 1e3 / n,
        }
        return [
            Prediction(*f[:4], timings_ms=dict(timing), logits=row, unknown=f[4])
            for f, row in zip(fields, logits, strict=True)
        ]

    def predict(self, frame: np.ndarray, color: str = "bgr") -> Prediction:
        """Classify one frame: BGR by default, `color="rgb"` for RGB arrays, grey accepted as it is."""
        return self.predict_batch([frame], color)[0]

    def predict_batch(self, frames: Sequence[np.ndarray], color: str = "bgr") -> list[Prediction]:
        """Classify several frames in one inference call; `frames` is a list of frames or an N×H×W×C array."""
        if not isinstance(frames, list | tuple | np.ndarray):
            raise InputError(
                f"predict_batch takes a list of frames (numpy arrays), got {type(frames).__name__}; "
                "for one frame call predict(frame)"
            )
        if len(frames) == 0:
            raise InputError("predict_batch needs at least one frame")
        t0 = time.perf_counter()
        batch = self.preprocess_batch(frames, color)
        return self.predict_tensor(batch, preprocess_ms=(time.perf_counter() - t0) * 1e3)

    def preprocess_batch(self, frames: Sequence[np.ndarray], color: str = "bgr") -> np.ndarray:
        """Frames → the model's N×C×H×W float32 input, by the bundle's own preprocessing."""
        return np.concatenate([self.preprocessor(f, color) for f in frames])
