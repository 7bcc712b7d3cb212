"""The backend protocol: load a bundle file, infer a batch, describe yourself.

Shapes, dtypes and finiteness are checked once here (as Polygraphy's base runner does); each backend
implements only `_infer`. Backend modules import their engine (onnxruntime, tensorrt, torch) inside
themselves, so importing `edgecls.runtime` never pulls them in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field

import numpy as np

from edgecls.bundle import Bundle
from edgecls.errors import BundleError, InputError


@dataclass(frozen=True)
class BackendInfo:
    name: str
    device: str
    precision: str
    file: str
    providers: tuple[str, ...] = field(default_factory=tuple)
    detail: str = ""
    threads: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def refuse_geometry(bundle: Bundle, graph: str, shape) -> None:
    """BundleError unless `shape` (the graph's input: N, C, H, W; names or None for dynamic axes) fits the manifest's
    channels and size: otherwise every predict would fail inside the engine with its own untyped error."""
    wanted = (bundle.input.channels, bundle.input.size, bundle.input.size)
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if len(fixed) != 4 or any(d is not None and d != w for d, w in zip(fixed[1:], wanted, strict=True)):
        raise BundleError(
            f"{graph} takes input {list(shape)}, but the manifest declares N×{'×'.join(map(str, wanted))}: the "
            "manifest was edited or belongs to another model. Re-export the bundle"
        )


def stack(parts: list[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray | None]:
    """The (logits, features) of batches run one after another, as one batch's."""
    logits = np.concatenate([part[0] for part in parts])
    return logits, None if parts[0][1] is None else np.concatenate([part[1] for part in parts])


class Backend(ABC):
    name: str = ""
    source_graph: str = ""  # the bundle's ONNX file this backend runs (an engine's source): its calibration applies
    has_features: bool = False  # the graph answers `features` beside the logits (`edgecls.feature_distance`)

    def __init__(self, bundle: Bundle, precision: str, device: str):
        self.bundle = bundle
        self.precision = precision
        self.device = device
        self.input_shape = (bundle.input.channels, bundle.input.size, bundle.input.size)
        # A graph exported with a fixed batch of 1 (and no dynamic axis to give it) runs image by image.
        self.fixed_batch = bundle.input.shape[0] == 1

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """N×C×H×W float32 normalized input → N×num_classes float32 logits."""
        return self.infer_with_features(batch)[0]

    def infer_with_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """N×C×H×W float32 normalized input → (logits, the N×ΣC `features` the unknown score reads, or None where the
        graph has no such output)."""
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32:
            raise InputError(
                f"batch must be a float32 numpy array, got {getattr(batch, 'dtype', type(batch).__name__)}"
            )
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise InputError(f"batch must be N×{'×'.join(map(str, self.input_shape))}, got {batch.shape}")
        if batch.shape[0] == 0:
            raise InputError("empty batch: pass at least one image")
        if not np.isfinite(batch).all():
            raise InputError("batch contains NaN or infinite values; check the preprocessing or the camera")
        if self.fixed_batch and len(batch) > 1:
            return stack([self._infer(np.ascontiguousarray(batch[i : i + 1])) for i in range(len(batch))])
        return self._infer(np.ascontiguousarray(batch))

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits, features or None) of a checked, contiguous batch."""

    @abstractmethod
    def describe(self) -> BackendInfo: ...

    def synchronize(self) -> None:  # noqa: B027 (optional hook, a no-op for host-synchronous backends)
        """Wait for queued device work; host-synchronous backends have none."""

    def close(self) -> None:  # noqa: B027 (optional hook: backends holding device memory free it here)
        """Release what the backend holds outside Python's garbage collector (device memory, streams)."""
