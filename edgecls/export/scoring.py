"""Scoring an export's graphs: every ONNX file on every split, through the runtime's preprocessing and ONNX Runtime
on the CPU, as the file's target computes it.

A `Scorer` starts on a graph as soon as its file is written, while the next one is still being made (ModelOpt's
child process runs for seconds): each graph is loaded once, and its chunks of images are scored one core each,
all graphs' chunks side by side, so no core waits for the slowest graph. Each chunk is the same 500 images, scored
by the same kernels, as when the graphs were scored one after another: the figures do not depend on the schedule.
Chunks are capped at `CHUNK_BYTES` of normalized input, since one per core is in memory at once.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgecls.console import console
from edgecls.data.imageset import ImageSet
from edgecls.export.onnx_export import FEATURES_NAME, INPUT_NAME, OUTPUT_NAME
from edgecls.feature_distance import FeatureDistance
from edgecls.runtime.preprocess import Preprocessor

CHUNK = 500  # images normalized and scored at a time
CHUNK_BYTES = 64 << 20  # at most this much normalized input per chunk: one per core is in memory at once
EVALUATED_WITH = {
    "cpu": "onnxruntime CPU integer kernels on this machine (the deployed arithmetic)",
    "tensorrt": "onnxruntime with graph optimizations off: Q/DQ simulated in float, the arithmetic TensorRT's INT8 "
    "kernels perform (int32 accumulation); ONNX Runtime's own integer kernels are not this graph's target",
}


def evaluation_target(entry: dict) -> str:
    """How a manifest file entry's graph is scored: TensorRT's INT8 graph as TensorRT computes it, the rest as the CPU
    runs them."""
    return "tensorrt" if entry["precision"] == "int8" and entry["target"] == "tensorrt" else "cpu"


def session(path: Path, target: str = "cpu", threads: int = 0):
    """An ONNX Runtime CPU session that scores `path` as `target` computes it (`EVALUATED_WITH`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if target == "tensorrt":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def chunk_size(prep: Preprocessor) -> int:
    """Images per chunk: `CHUNK`, fewer for large inputs (224×224 RGB: 111)."""
    return max(1, min(CHUNK, CHUNK_BYTES // (prep.channels * prep.size * prep.size * 4)))


def onnx_outputs(graph, images: np.ndarray, prep: Preprocessor, names: list[str]) -> list[np.ndarray]:
    """The outputs `names` for uint8 images, normalized chunk by chunk (an image folder's memory map is never loaded
    whole); a graph with a fixed batch of 1 is run image by image."""
    fixed_batch = graph.get_inputs()[0].shape[0] == 1
    results = []
    for batch in prep.batches(images, chunk_size(prep)):
        pieces = np.split(batch, len(batch)) if fixed_batch else [batch]
        results += [graph.run(names, {INPUT_NAME: piece}) for piece in pieces]
    return [np.concatenate([result[i] for result in results]) for i in range(len(names))]


def onnx_scores(graph, images: np.ndarray, prep: Preprocessor) -> np.ndarray:
    """The logits of uint8 images (`onnx_outputs`)."""
    return onnx_outputs(graph, images, prep, [OUTPUT_NAME])[0]


def _score_chunk(graph, images: np.ndarray, prep: Preprocessor, distance: FeatureDistance | None) -> tuple:
    """(logits, N×blocks feature distances or None) of one chunk: only the distances are kept, not the features."""
    if distance is None:
        return onnx_scores(graph, images, prep), None
    logits, features = onnx_outputs(graph, images, prep, [OUTPUT_NAME, FEATURES_NAME])
    return logits, distance.distances(features)


class Scorer:
    """Scores graphs on `splits` in the background as they are added; `rows` waits for all and summarizes them. With
    a `distance`, each graph's feature distances are kept too (`distances`), for its unknown threshold."""

    def __init__(self, splits: dict[str, ImageSet], prep: Preprocessor, distance: FeatureDistance | None = None):
        self.splits, self.prep, self.distance = splits, prep, distance
        self.pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="score")
        self.jobs: dict[str, dict[str, list[Future]]] = {}
        self.entries: dict[str, dict] = {}
        self.started = time.perf_counter()
        self.scores: dict[tuple[str, str], np.ndarray] = {}  # (file, split) → logits, once `rows` has run
        self.distances: dict[tuple[str, str], np.ndarray] = {}  # (file, split) → feature distances, with `distance`

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def add(self, path: Path, entry: dict) -> None:
        """Start scoring the graph at `path` (its manifest entry says how)."""
        graph = session(path, evaluation_target(entry), threads=1)
        self.entries[path.name] = entry
        self.jobs[path.name] = {
            split: [
                self.pool.submit(_score_chunk, graph, chunk, self.prep, self.distance)
                for chunk in self._chunks(data.images)
            ]
            for split, data in self.splits.items()
        }

    def _chunks(self, images: np.ndarray) -> list[np.ndarray]:
        size = chunk_size(self.prep)
        return [images[start : start + size] for start in range(0, len(images), size)]

    def rows(self) -> dict[str, dict]:
        """{split: {dataset, samples, files: {name: top-1, agreement with and largest |Δ logit| from the first graph
        added (model.onnx)}}}."""
        results = {
            (name, split): [job.result() for job in chunks]
            for name, by_split in self.jobs.items()
            for split, chunks in by_split.items()
        }
        scores = {key: np.concatenate([logits for logits, _ in chunks]) for key, chunks in results.items()}
        if self.distance is not None:
            self.distances = {key: np.concatenate([d for _, d in chunks]) for key, chunks in results.items()}
        images = sum(len(data) for data in self.splits.values())
        console.print(
            f"  scored {len(self.jobs)} graph{'s' if len(self.jobs) > 1 else ''} on {images:,} images each "
            f"({', '.join(self.splits)}), "
            f"{time.perf_counter() - self.started:.1f} s from the first graph"
        )
        self.scores = scores
        reference = next(iter(self.jobs))
        return {
            split: {
                "dataset": data.name,
                "samples": len(data),
                "files": {
                    name: _row(entry, scores[name, split], scores[reference, split], data.labels)
                    for name, entry in self.entries.items()
                },
            }
            for split, data in self.splits.items()
        }


def _row(entry: dict, scores: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "precision": entry["precision"],
        "flavour": entry["flavour"],
        "top1": float(np.mean(scores.argmax(1) == labels)),
        "agreement_with_fp32": float(np.mean(scores.argmax(1) == reference.argmax(1))),
        "max_abs_diff_vs_fp32": float(np.abs(scores - reference).max()),
        "evaluated_with": EVALUATED_WITH[evaluation_target(entry)],
    }
