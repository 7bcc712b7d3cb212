"""The one answer of every edgecls Triton model: `edgecls serve`'s two models and the Python model that
`edgecls export --triton` writes answer with the same outputs, so `RemoteClassifier` talks to either.

    label (BYTES [1]), index (INT64 [1]), confidence (FP32 [1]), unknown (BOOL [1]),
    topk_index (INT64 [k]), topk_label (BYTES [k]), topk_prob (FP32 [k]), logits (FP32 [classes])

`unknown` is true where the calibrated top-1 confidence is below the bundle's threshold (fitted on validation at
export), as `Prediction.unknown` is in the process.
"""

from __future__ import annotations

import json
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgecls.imaging import ModelImage


OUTPUTS = (
    ("label", "BYTES"),
    ("index", "INT64"),
    ("confidence", "FP32"),
    ("unknown", "BOOL"),
    ("topk_index", "INT64"),
    ("topk_label", "BYTES"),
    ("topk_prob", "FP32"),
    ("logits", "FP32"),
)
MODEL_FILE = Path(__file__).with_name("triton_model.py")  # the Python-backend model that answers with these
NUMPY = {"BYTES": np.bytes_, "INT64": np.int64, "FP32": np.float32, "BOOL": np.bool_}
PBTXT = {"BYTES": "TYPE_STRING", "INT64": "TYPE_INT64", "FP32": "TYPE_FP32", "BOOL": "TYPE_BOOL"}
DTYPES = {"UINT8": np.dtype(np.uint8), "FP32": np.dtype(np.float32)}  # the two models' inputs


@dataclass(frozen=True)
class ModelInput:
    """What one served model takes: its input's name and datatype, one item's shape (None: any size up to the
    gateway's max_side), the allowed sizes of the last axis (frames: grey, BGR, BGRA) and whether values must be
    finite."""

    name: str
    datatype: str
    item_shape: tuple[int | None, ...]
    last_axis: tuple[int, ...] | None = None
    finite: bool = False

    def describe(self, max_batch: int, max_side: int) -> str:
        dims = [f"1..{max_side}" if d is None else str(d) for d in self.item_shape]
        if self.last_axis:
            dims[-1] = "|".join(map(str, self.last_axis))
        return f"{self.datatype} [1..{max_batch}, {', '.join(dims)}]"


def frames_input() -> ModelInput:
    return ModelInput("frame", "UINT8", (None, None, None), last_axis=(1, 3, 4))


def tensors_input(image: ModelImage) -> ModelInput:
    return ModelInput("input", "FP32", (image.channels, image.size, image.size), finite=True)


def output_width(name: str, top_k: int, classes: int) -> int:
    return classes if name == "logits" else top_k if name.startswith("topk_") else 1


def label_bytes(classes) -> np.ndarray:
    return np.array([name.encode() for name in classes], dtype=np.bytes_)


def answer(classifier, batch: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """A `Classifier`'s answer to an N×C×H×W input batch: one row per image of each output, built with whole-array
    operations, so a served batch of 64 makes no per-image Python objects. `labels`: `label_bytes(classes)`."""
    logits, features = classifier.infer_with_features(batch)
    order, probs = classifier.rank(logits)
    return {
        "label": labels[order[:, :1]],
        "index": order[:, :1].astype(np.int64),
        "confidence": probs[:, :1].astype(np.float32),
        "unknown": classifier.unknown(classifier.known_score(logits, features))[:, None],
        "topk_index": order.astype(np.int64),
        "topk_label": labels[order],
        "topk_prob": probs.astype(np.float32),
        "logits": logits.astype(np.float32, copy=False),
    }


def config_outputs(top_k: int, classes: int) -> str:
    """The `output [...]` block of a Triton model config (labels on the logits, for the classification extension)."""
    rows = []
    for name, kind in OUTPUTS:
        labels = ', label_filename: "labels.txt"' if name == "logits" else ""
        rows.append(
            f'  {{ name: "{name}", data_type: {PBTXT[kind]}, dims: [ {output_width(name, top_k, classes)} ]{labels} }}'
        )
    return "output [\n" + ",\n".join(rows) + "\n]\n"


def python_model_config(
    name: str,
    model_input: ModelInput,
    top_k: int,
    classes: int,
    max_batch: int,
    parameters: dict[str, str],
    queue_delay_us: int = 0,
    instances: int = 1,
) -> str:
    """The config of a Python-backend model running `MODEL_FILE` (its `parameters`: see that file)."""
    dims = ", ".join("-1" if d is None else str(d) for d in model_input.item_shape)
    return (
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
        f'input [ {{ name: "{model_input.name}", data_type: TYPE_{model_input.datatype}, dims: [ {dims} ] }} ]\n'
        f"{config_outputs(top_k, classes)}"
        f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}\n"
        f"instance_group [ {{ count: {instances}, kind: KIND_CPU }} ]\n"
        + "".join(
            f'parameters {{ key: "{key}", value: {{ string_value: {json.dumps(value, ensure_ascii=False)} }} }}\n'
            for key, value in parameters.items()
        )
    )


def python_path() -> str:
    """Where this environment's edgecls and packages live: what the Python-backend model puts on its sys.path."""
    import edgecls

    paths = [str(Path(edgecls.__file__).parents[1]), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return os.pathsep.join(dict.fromkeys(paths))
