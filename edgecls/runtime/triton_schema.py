"""The one answer of every edgecls Triton model: `edgecls serve`'s two models and the Python model that
`edgecls export --triton` writes answer with the same outputs, so `RemoteClassifier` talks to either.

    label (BYTES [1]), index (INT64 [1]), confidence (FP32 [1]),
    topk_index (INT64 [k]), topk_label (BYTES [k]), topk_prob (FP32 [k]), logits (FP32 [classes])
"""

from __future__ import annotations

import numpy as np

OUTPUTS = (
    ("label", "BYTES"),
    ("index", "INT64"),
    ("confidence", "FP32"),
    ("topk_index", "INT64"),
    ("topk_label", "BYTES"),
    ("topk_prob", "FP32"),
    ("logits", "FP32"),
)
NUMPY = {"BYTES": np.bytes_, "INT64": np.int64, "FP32": np.float32}
PBTXT = {"BYTES": "TYPE_STRING", "INT64": "TYPE_INT64", "FP32": "TYPE_FP32"}


def output_width(name: str, top_k: int, classes: int) -> int:
    return classes if name == "logits" else top_k if name.startswith("topk_") else 1


def prediction_arrays(preds, index_of: dict[str, int]) -> dict[str, np.ndarray]:
    """Predictions → one row per request of each output."""
    return {
        "label": np.array([[p.label.encode()] for p in preds], dtype=np.bytes_),
        "index": np.array([[p.index] for p in preds], dtype=np.int64),
        "confidence": np.array([[p.confidence] for p in preds], dtype=np.float32),
        "topk_index": np.array([[index_of[name] for name, _ in p.topk] for p in preds], dtype=np.int64),
        "topk_label": np.array([[name.encode() for name, _ in p.topk] for p in preds], dtype=np.bytes_),
        "topk_prob": np.array([[prob for _, prob in p.topk] for p in preds], dtype=np.float32),
        "logits": np.stack([p.logits for p in preds]).astype(np.float32),
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
