"""TensorRT engines, built and run for real: only where TensorRT, pycuda or cuda-python, and a GPU exist (`-m
tensorrt`)."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgecls.runtime.backends import tensorrt_unavailable

WHY_NOT = tensorrt_unavailable()
pytestmark = [pytest.mark.tensorrt, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_builds_runs_and_agrees_with_onnxruntime(bundle_dir, tmp_path, precision):
    from edgecls.doctor import load_sample, polygraphy_check
    from edgecls.runtime import Classifier
    from edgecls.runtime.engines import build_bundle_engines

    (engine,) = build_bundle_engines(bundle_dir, (precision,), out_dir=tmp_path)
    sidecar = json.loads((tmp_path / f"model.{precision}.engine.json").read_text())
    assert sidecar["precision"] == precision and sidecar["gpu"] and sidecar["engine_sha256"] and sidecar["mode"]
    trt_clf = Classifier.load(bundle_dir, backend="tensorrt", precision=precision)
    ort_clf = Classifier.load(bundle_dir, backend="onnxruntime", precision="fp32", device="cpu")
    images, _ = load_sample(trt_clf.bundle)
    batch = trt_clf.preprocessor.batch_from_images(images)  # 200 images: more than the profile's 64, so it is split
    agree = np.mean(trt_clf.infer(batch).argmax(1) == ort_clf.infer(batch).argmax(1))
    assert agree >= 0.95
    assert trt_clf.backend.last_device_ms > 0
    from edgecls.doctor import bounds

    graph = trt_clf.backend.source_graph  # the engine against the graph it was built from, within export's measurement
    limit = bounds(trt_clf.bundle, graph, precision)
    assert polygraphy_check(tmp_path / f"model.{precision}.engine", bundle_dir / graph, batch[:16], limit["atol"])[
        "passed"
    ]
    assert sidecar["tf32"] is (None if precision != "fp32" else False)


def test_rebuild_reuses_the_timing_cache(bundle_dir, tmp_path, monkeypatch):
    """The first build on a machine starts from an empty timing cache and writes it; the next one reads it back."""
    from edgecls.runtime.engines import build_engine

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    onnx = (bundle_dir / "model.onnx").read_bytes()
    first = build_engine(onnx, "model.onnx", tmp_path / "a.engine", "fp16")
    second = build_engine(onnx, "model.onnx", tmp_path / "b.engine", "fp16")
    assert not first["timing_cache_reused"] and second["timing_cache_reused"]
    assert Path(second["timing_cache"]).stat().st_size > 0
