import json
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecls.bundle import Bundle
from edgecls.errors import BackendUnavailableError, ConfigError, EngineMismatchError, InputError
from edgecls.imaging import ImageInput, Normalization, Policy, area_resize, center_square
from edgecls.runtime import Classifier, Prediction
from edgecls.runtime.engines import check_engine, sidecar_path
from edgecls.runtime.preprocess import Preprocessor


@pytest.fixture(scope="module")
def clf(bundle_dir):
    return Classifier.load(bundle_dir, backend="onnxruntime", precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def test_images(cifar_root):
    from edgecls.data import load_dataset

    return load_dataset("cifar10", "test", cifar_root)


def test_runtime_imports_and_predicts_without_torch_tensorrt_pycuda_or_the_training_packages(bundle_dir):
    code = f"""
import sys
for name in ("torch", "tensorrt", "pycuda", "torchvision", "edgecls.export", "edgecls.train", "edgecls.data"):
    sys.modules[name] = None  # any import of them now raises ImportError
import numpy as np
import edgecls, edgecls.runtime, edgecls.runtime.engines, edgecls.runtime.backends.tensorrt, edgecls.camera.loop
from edgecls.runtime import Classifier
clf = Classifier.load({str(bundle_dir)!r})
pred = clf.predict(np.zeros((480, 640, 3), np.uint8))
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules if sys.modules[m] is not None)
print(clf.info.name, clf.info.precision, pred.label)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["onnxruntime", "int8"]  # auto: the CPU picks the U8S8 graph


def test_auto_choice_explains_itself(bundle_dir):
    clf = Classifier.load(bundle_dir)
    assert clf.info.file == "model.int8.onnx" and "TensorRT is not installed" in clf.reason
    assert "int8" in clf.describe()


def test_predict_matches_test_labels_through_the_frame_path(clf, test_images):
    hits = 0
    for img, label in zip(test_images.images[:50], test_images.labels[:50], strict=True):
        frame = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), (96, 96), interpolation=cv2.INTER_NEAREST)
        pred = clf.predict(frame)
        hits += pred.index == label
    assert hits >= 45
    assert isinstance(pred, Prediction) and len(pred.topk) == 5 and pred.topk[0][0] == pred.label
    assert set(pred.timings_ms) == {"preprocess", "inference", "postprocess"}
    assert 0 < pred.confidence <= 1


def test_rgb_and_grey_frames_are_accepted(clf, test_images):
    rgb = test_images.images[0]
    assert clf.predict(rgb, color="rgb").index == clf.predict(np.ascontiguousarray(rgb[..., ::-1])).index
    assert isinstance(clf.predict(np.full((40, 60), 128, np.uint8)), Prediction)
    assert isinstance(clf.predict(np.zeros((40, 60, 4), np.uint8)), Prediction)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((0, 10, 3), np.uint8), "empty frame"),
        (np.zeros((32, 32, 3), np.float32), "dtype must be uint8"),
        (np.full((32, 32, 3), np.nan, np.float32), "NaN"),
        (np.zeros((32, 32, 2), np.uint8), "H×W×3"),
        (np.zeros((2, 32, 32, 3), np.uint8), "H×W×3"),
        ([[1, 2], [3, 4]], "numpy array"),
    ],
)
def test_bad_frames_raise_typed_errors(clf, frame, message):
    with pytest.raises(InputError, match=message):
        clf.predict(frame)


def test_bad_batches_raise_typed_errors(clf):
    with pytest.raises(InputError, match="float32"):
        clf.infer(np.zeros((1, 3, 32, 32), np.float64))
    with pytest.raises(InputError, match="N×3×32×32"):
        clf.infer(np.zeros((1, 1, 32, 32), np.float32))
    with pytest.raises(InputError, match="NaN"):
        clf.infer(np.full((1, 3, 32, 32), np.nan, np.float32))
    with pytest.raises(InputError, match="color"):
        clf.predict(np.zeros((8, 8, 3), np.uint8), color="hsv")
    with pytest.raises(InputError, match="at least one"):
        clf.predict_batch([])


def test_unknown_or_missing_backends_are_explained(bundle_dir):
    with pytest.raises(ConfigError, match="unknown backend"):
        Classifier.load(bundle_dir, backend="openvino")
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
        Classifier.load(bundle_dir, backend="onnxruntime", device="cuda")
    with pytest.raises(ConfigError, match="precision"):
        Classifier.load(bundle_dir, precision="int4")


def test_predict_is_thread_safe(clf, test_images):
    frames = [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for img in test_images.images[:40]]
    expected = [p.index for p in clf.predict_batch(frames)]
    results = {}

    def worker(k):
        results[k] = [clf.predict(f).index for f in frames]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results.values())


def test_fast_area_resize_stays_within_two_grey_levels(test_images):
    rng = np.random.default_rng(0)
    for img in test_images.images[:20]:
        big = cv2.resize(img, (480, 480), interpolation=cv2.INTER_LINEAR)
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[:, 80:560] = big
        frame = np.clip(frame.astype(int) + rng.integers(-3, 4, frame.shape), 0, 255).astype(np.uint8)
        square = center_square(frame)
        exact = cv2.resize(square, (32, 32), interpolation=cv2.INTER_AREA)
        fast = area_resize(square, 32)
        assert np.abs(fast.astype(int) - exact.astype(int)).max() <= 2


def test_preprocessor_follows_the_manifest(bundle_dir):
    manifest = json.loads((bundle_dir / "edgecls.json").read_text())
    bundle = Bundle.open(bundle_dir)
    prep = Preprocessor(bundle.input, bundle.preprocess)
    frame = np.zeros((40, 80, 3), np.uint8)
    frame[:, 20:60] = (0, 0, 255)  # a red square in BGR, centred
    x = prep(frame)
    norm = manifest["preprocess"]["normalization"]
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    assert np.allclose(
        x[0, 0], (255 - norm["mean"][0]) / norm["std"][0], atol=1e-4
    )  # red lands in channel 0 (RGB model)
    assert np.allclose(x[0, 2], (0 - norm["mean"][2]) / norm["std"][2], atol=1e-4)


def test_engine_built_elsewhere_is_refused(tmp_path):
    engine = tmp_path / "model.int8.engine"
    data = b"engine bytes"
    engine.write_bytes(data)
    recorded = {
        "gpu": "Orin (NVIDIA Jetson AGX Orin Developer Kit)",
        "compute_capability": "8.7",
        "sm_count": 16,
        "memory_mib": 62841,
        "tensorrt": "10.3.0",
        "onnx_sha256": "ab",
        "precision": "int8",
        "engine_sha256": __import__("hashlib").sha256(data).hexdigest(),
    }
    sidecar_path(engine).write_text(json.dumps(recorded))
    assert check_engine(engine, dict(recorded), data) == recorded
    with pytest.raises(EngineMismatchError, match="gpu='Orin.*'NVIDIA H100"):
        check_engine(engine, {**recorded, "gpu": "NVIDIA H100"}, data)
    with pytest.raises(
        EngineMismatchError, match="sm_count=16 but this machine has 8"
    ):  # an Orin NX also says "Orin", sm_87
        check_engine(engine, {**recorded, "sm_count": 8}, data)
    with pytest.raises(EngineMismatchError, match="tensorrt"):
        check_engine(engine, {**recorded, "tensorrt": "8.6.1"}, data)
    with pytest.raises(EngineMismatchError, match="hash"):
        check_engine(engine, recorded, b"engine bytes, edited")
    sidecar_path(engine).write_text('{"gpu": "Orin", ')
    with pytest.raises(EngineMismatchError, match="not valid JSON"):
        check_engine(engine, recorded, data)
    sidecar_path(engine).unlink()
    with pytest.raises(EngineMismatchError, match="sidecar"):
        check_engine(engine, recorded, data)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 700), w=st.integers(1, 700), channels=st.sampled_from([None, 1, 3, 4]), seed=st.integers(0, 2**16)
)
def test_any_frame_size_becomes_one_finite_input_tensor(h, w, channels, seed):
    prep = Preprocessor(ImageInput(32, 3), Policy(Normalization("zscore", (120.0,) * 3, (60.0,) * 3)))
    shape = (h, w) if channels is None else (h, w, channels)
    frame = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    x = prep(frame)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32 and np.isfinite(x).all()
    assert x.min() >= (0 - 120) / 60 - 1e-6 and x.max() <= (255 - 120) / 60 + 1e-6


def test_tied_logits_resolve_to_the_lowest_class_as_argmax_does(bundle_dir):
    clf = Classifier.load(bundle_dir, backend="onnxruntime", precision="fp32", device="cpu")
    # an INT8 output of mobilenet_mod on a CIFAR-10 test image: classes 4 and 6 tie exactly
    row = [
        -0.80443984,
        -1.1262158,
        2.1558988,
        -0.12871037,
        2.284609,
        -1.2549262,
        2.284609,
        -1.190571,
        -1.6410573,
        -0.61137426,
    ]
    logits = np.tile(np.array(row, np.float32), (64, 1))
    features = np.zeros((64, sum(clf.distance.widths)), np.float32)
    assert [fields[1] for fields in clf._postprocess(logits, features)] == [int(np.argmax(row))] * 64 == [4] * 64


def test_a_served_answer_is_the_classifier_s_prediction_field_by_field(bundle_dir):
    from edgecls.serving.triton_schema import OUTPUTS, answer, label_bytes

    clf = Classifier.load(bundle_dir, backend="onnxruntime", precision="fp32", device="cpu", top_k=3)
    logits = np.random.default_rng(0).normal(size=(32, len(clf.classes))).astype(np.float32)
    logits[:4] = logits[:4].round(0)  # exact ties among the top classes
    features = np.random.default_rng(1).normal(size=(32, sum(clf.distance.widths))).astype(np.float32)
    features[:16] = np.concatenate(  # half the rows at a class's mean: like the training classes
        [np.linalg.solve(w.T, c[0]) for w, c in zip(clf.distance.whiten, clf.distance.centres, strict=True)]
    )
    clf.infer_with_features = lambda batch: (logits, features)
    want = clf.predict_tensor(np.zeros((32, 3, 32, 32), np.float32))
    got = answer(clf, np.zeros((32, 3, 32, 32), np.float32), label_bytes(clf.classes))
    assert set(got) == {name for name, _ in OUTPUTS} and all(len(v) == 32 for v in got.values())
    assert got["index"][:, 0].tolist() == [p.index for p in want] == logits.argmax(axis=1).tolist()
    assert [v.decode() for v in got["label"][:, 0]] == [p.label for p in want]
    assert got["confidence"][:, 0].tolist() == pytest.approx([p.confidence for p in want])
    assert [[v.decode() for v in row] for row in got["topk_label"]] == [[n for n, _ in p.topk] for p in want]
    assert got["topk_index"].tolist() == [[clf.classes.index(n) for n, _ in p.topk] for p in want]
    np.testing.assert_allclose(got["topk_prob"], [[q for _, q in p.topk] for p in want], rtol=1e-6)
    assert np.array_equal(got["logits"], logits)
    assert got["unknown"][:, 0].tolist() == [p.unknown for p in want] and len({p.unknown for p in want}) == 2


@pytest.mark.parametrize("frames", [None, 3, "frame.jpg"])
def test_predict_batch_names_what_it_takes(clf, frames):
    with pytest.raises(InputError, match="list of frames"):
        clf.predict_batch(frames)


def _pred(label: str, confidence: float = 0.9, unknown: bool = False):
    return Prediction(label, 0, confidence, ((label, confidence),), unknown=unknown)


def test_voting_ignores_a_single_flicker_and_unknown_frames_vote_unknown():
    from edgecls.runtime.decision import Decider

    decider = Decider.parse("3/5")
    seen = ["truck", "cat", "truck", "cat", "cat", "truck", "truck", "truck", "cat", "truck"]
    decisions = [decider.update(_pred(label)).label for label in seen]
    assert decisions == [None, None, None, None, "cat", "cat", "truck", "truck", "truck", "truck"]
    doubtful = [decider.update(_pred("truck", unknown=True)) for _ in range(3)]
    assert [d.label for d in doubtful] == ["truck", None, "unknown"] and doubtful[-1].votes == 3
    assert [d.vote for d in doubtful] == ["unknown"] * 3
    floor = Decider(1, 1, min_confidence=0.5)
    assert floor.update(_pred("cat", 0.4)).label == "unknown" and floor.update(_pred("cat", 0.6)).label == "cat"
    with pytest.raises(ConfigError, match="N of the last M"):
        Decider(4, 3)
    with pytest.raises(ConfigError, match="3/5"):
        Decider.parse("three of five")


def test_robot_loop_without_a_camera_says_so_without_a_traceback(bundle_dir):
    result = subprocess.run(
        [sys.executable, "tools/robot_loop.py", str(bundle_dir), "--source", "/nonexistent.mp4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: video source '/nonexistent.mp4'")


def test_stage_timer_is_exact_while_short_and_bounded_and_close_once_long():
    from edgecls.camera.stats import StageTimer, summarize

    rng = np.random.default_rng(0)
    samples = rng.lognormal(mean=0.5, sigma=0.6, size=20_000)  # a long-tailed latency, ms
    short, long = StageTimer(keep=50_000), StageTimer(keep=1_000)
    for ms in samples:
        short.add({"processing_ms": ms})
        long.add({"processing_ms": ms})
    exact = summarize(samples)
    assert {k: short.summary()["processing_ms"][k] for k in exact} == exact
    bounded = long.summary()["processing_ms"]
    assert len(long.recent("processing_ms")) == 1_000 and bounded["percentiles"].startswith("±0.5%")
    assert (bounded["n"], bounded["min"], bounded["max"]) == (exact["n"], exact["min"], exact["max"])
    assert bounded["mean"] == pytest.approx(exact["mean"], rel=1e-9)
    for q in ("p50", "p90", "p99"):
        assert bounded[q] == pytest.approx(exact[q], rel=0.01)


def test_a_provider_failing_mid_run_is_raised_not_swapped_for_the_next_one(bundle_dir):
    """ONNX Runtime's Python session, on an execution provider failure during a run, rebuilds itself on the next
    provider and retries, printing only to stdout; describe() would still name the first. The backend turns that off."""
    from onnxruntime.capi import onnxruntime_pybind11_state as C

    from edgecls.runtime.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(Bundle.open(bundle_dir), "fp32", device="cpu")
    session = backend.session
    session._fallback_providers = ["CPUExecutionProvider"]  # what a CUDA or TensorRT session falls back to

    class FailingProvider:
        def __getattr__(self, name):
            return getattr(real, name)

        def run(self, *args):
            raise C.EPFail("CUDA failure 700: an illegal memory access was encountered")

    real = session._sess
    session._sess = FailingProvider()
    with pytest.raises(C.EPFail, match="illegal memory access"):
        backend.infer(np.zeros((1, *backend.input_shape), np.float32))


def test_a_cuda_session_loads_the_pip_cuda_libraries_first(bundle_dir, monkeypatch):
    """onnxruntime-gpu[cuda,cudnn] installs CUDA and cuDNN under site-packages/nvidia, where ONNX Runtime does not look
    by itself: without `preload_dlls()` before the session, its CUDA provider fails on a working GPU."""
    import onnxruntime as ort

    from edgecls.runtime.backends import onnxruntime as backend_module

    order = []

    class Session:
        def __init__(self, model, options, providers):
            order.append(("session", providers[0]))

        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def get_inputs(self):
            return [type("Input", (), {"name": "input", "shape": ["batch", 3, 32, 32]})()]

        def get_outputs(self):
            return [type("Output", (), {"name": name})() for name in ("logits", "features")]

        def disable_fallback(self):
            order.append("no fallback")

    backend_module.preload_cuda_libraries.cache_clear()
    monkeypatch.setattr(ort, "preload_dlls", lambda: order.append("preload"), raising=False)
    monkeypatch.setattr(ort, "InferenceSession", Session)
    monkeypatch.setattr(backend_module, "available_devices", lambda: ["cpu", "cuda"])
    backend_module.OnnxRuntimeBackend(Bundle.open(bundle_dir), "fp32", device="cuda")
    backend_module.preload_cuda_libraries.cache_clear()
    assert order == ["preload", ("session", "CUDAExecutionProvider"), "no fallback"]
