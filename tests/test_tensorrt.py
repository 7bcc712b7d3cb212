"""TensorRT engines, built and run for real: only where tensorrt, pycuda and a GPU exist (`-m tensorrt`)."""

import importlib.util
import json

import numpy as np
import pytest


def _why_not() -> str | None:
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("pycuda") is None:
        return "TensorRT and pycuda are not installed"
    from edgecls.runtime.backends import cuda_device_count

    devices, problem = cuda_device_count()
    return None if devices else f"TensorRT is installed but no CUDA device is usable ({problem})"


WHY_NOT = _why_not()
pytestmark = [pytest.mark.tensorrt, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_builds_runs_and_agrees_with_onnxruntime(bundle_dir, tmp_path, precision, cifar_root):
    from edgecls.data import load_dataset
    from edgecls.export.tensorrt import build_bundle_engines
    from edgecls.runtime import Classifier

    (engine,) = build_bundle_engines(bundle_dir, (precision,), out_dir=tmp_path)
    sidecar = json.loads((tmp_path / f"model.{precision}.engine.json").read_text())
    assert sidecar["precision"] == precision and sidecar["gpu"] and sidecar["engine_sha256"]
    trt_clf = Classifier.load(bundle_dir, backend="tensorrt", precision=precision)
    ort_clf = Classifier.load(bundle_dir, backend="onnxruntime", precision="fp32", device="cpu")
    test = load_dataset("cifar10", "test", cifar_root)
    batch = trt_clf.preprocessor.batch_from_images(test.images[:64])
    agree = np.mean(trt_clf.infer(batch).argmax(1) == ort_clf.infer(batch).argmax(1))
    assert agree >= 0.95
    assert trt_clf.backend.last_device_ms > 0


def test_implicit_int8_from_calibration_cache_where_supported(bundle_dir, tmp_path):
    import tensorrt as trt

    from edgecls.export.tensorrt import build_engine

    if not hasattr(trt, "IInt8EntropyCalibrator2") or not hasattr(trt.BuilderFlag, "INT8"):
        pytest.skip("this TensorRT has no implicit calibration")
    info = build_engine(bundle_dir / "model.onnx", tmp_path / "implicit.engine", "int8",
                        calibration_cache=bundle_dir / "calibration.cache")
    assert info["mode"] == "implicit-calibration-cache"
