"""`edgecls doctor`: the bundle's own labelled sample through every backend here, against ONNX Runtime FP32."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecls import doctor
from edgecls.bundle import MANIFEST, Bundle, seal
from edgecls.cli import app
from edgecls.errors import BundleError, IntegrityError

spec = doctor.importlib.util.find_spec  # the real one, for the tests that hide a module


def test_doctor_runs_every_onnxruntime_precision_and_says_what_it_could_not_run(bundle_dir):
    report = doctor.run_doctor(bundle_dir, iterations=3)
    rows = {(r["backend"], r["device"], r["precision"]): r for r in report["rows"]}
    images, labels = doctor.load_sample(Bundle.open(bundle_dir))
    assert report["sample"]["images"] == len(labels) == 200 and images.dtype == np.uint8  # 20 of each class
    assert np.bincount(labels).tolist() == [20] * 10
    for precision in ("fp32", "fp16", "int8"):
        row = rows[("onnxruntime", "cpu", precision)]
        assert row["status"] == "ok" and row["batch1_ms"] > 0 and row["agreement"] >= doctor.MIN_AGREEMENT[precision]
    assert (
        rows[("onnxruntime", "cpu", "fp32")]["agreement"] == 1.0
        and rows[("onnxruntime", "cpu", "fp32")]["max_abs_diff"] == 0
    )
    if report["environment"]["tensorrt"] is None:
        assert rows[("tensorrt", "cuda:0", "int8")]["status"] == "not run"
        assert "TensorRT is not installed" in rows[("tensorrt", "cuda:0", "int8")]["why"]
    # the FP32 reference reproduces the accuracy the export host measured on the same images
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    assert rows[("onnxruntime", "cpu", "fp32")]["top1"] == manifest["accuracy"]["sample"]["files"]["model.onnx"]["top1"]
    assert report["ok"] and report["verdict"].startswith("OK:")


def test_a_backend_that_disagrees_fails_the_verdict(bundle_dir, monkeypatch):
    monkeypatch.setattr(doctor, "AGREEMENT_MARGIN", -0.05)  # demand more agreement than the graph itself had at export
    report = doctor.run_doctor(bundle_dir, iterations=1)
    int8 = next(r for r in report["rows"] if r["backend"] == "onnxruntime" and r["precision"] == "int8")
    assert int8["status"] == "FAIL" and "below" in int8["why"]
    assert not report["ok"] and report["verdict"].startswith("FAIL: ")
    result = CliRunner().invoke(app, ["doctor", str(bundle_dir), "--iterations", "1"])
    assert result.exit_code == 1 and "FAIL" in result.output


def test_a_tampered_or_missing_sample_is_refused(bundle_dir, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    with (copy / "sample.npz").open("r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    with pytest.raises(IntegrityError, match="sample.npz"):
        doctor.load_sample(Bundle.open(copy))
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["files"]["sample.npz"]
    (copy / MANIFEST).write_text(json.dumps(seal(manifest)))  # a consistent manifest of a bundle exported without one
    with pytest.raises(BundleError, match="no labelled sample"):
        doctor.load_sample(Bundle.open(copy))


def test_polygraphy_comparison_passes_within_tolerance_and_fails_outside_it(bundle_dir):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    clf_images, _ = doctor.load_sample(Bundle.open(bundle_dir))
    from edgecls.runtime import Classifier

    x = Classifier.load(
        bundle_dir, backend="onnxruntime", precision="fp32", device="cpu"
    ).preprocessor.batch_from_images(clf_images[:8])
    fp16 = OnnxrtRunner(SessionFromOnnx(str(bundle_dir / "model.fp16.onnx"), providers=["cpu"]))
    assert doctor.polygraphy_compare(fp16, bundle_dir / "model.onnx", x, atol=0.05)["passed"]
    fp16 = OnnxrtRunner(SessionFromOnnx(str(bundle_dir / "model.fp16.onnx"), providers=["cpu"]))
    assert not doctor.polygraphy_compare(fp16, bundle_dir / "model.onnx", x, atol=1e-7)["passed"]


def test_bounds_come_from_what_export_measured_on_the_same_sample(bundle_dir):
    """The INT8 graph itself is some distance from FP32 on the sample; an engine of it is held to that distance (against
    the graph it was built from) and to that agreement, not to fixed constants that fail correct engines."""
    bundle = Bundle.open(bundle_dir)
    sample = bundle.manifest.accuracy["sample"]["files"]
    assert sample["model.onnx"]["agreement_with_fp32"] == 1.0 and sample["model.onnx"]["max_abs_diff_vs_fp32"] == 0.0
    for graph in ("model.int8.onnx", "model.int8.trt.onnx"):
        recorded = sample[graph]
        limit = doctor.bounds(bundle, graph, "int8")
        assert limit["agreement"] == pytest.approx(recorded["agreement_with_fp32"] - doctor.AGREEMENT_MARGIN)
        assert (
            limit["atol"] == max(doctor.MIN_ATOL["int8"], recorded["max_abs_diff_vs_fp32"])
            and recorded["max_abs_diff_vs_fp32"] > 0
        )
    assert doctor.bounds(bundle, "model.onnx", "fp32")["atol"] == 1e-3
    report = doctor.run_doctor(bundle_dir, iterations=1)
    int8 = next(r for r in report["rows"] if r["precision"] == "int8" and r["backend"] == "onnxruntime")
    assert int8["bounds"]["from"].startswith("export's measurement of model.int8.onnx") and int8["status"] == "ok"


def test_first_run_passes_what_runs_here_and_skips_the_rest_with_reasons(bundle_dir, tmp_path, monkeypatch):
    from edgecls import first_run

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["doctor", str(bundle_dir), "--first-run"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "edgecls-first-run.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert report["schema"] == "edgecls.first-run/1" and report["ok"] and report["counts"]["FAIL"] == 0
    for precision in ("fp32", "fp16", "int8"):
        assert checks[f"batches onnxruntime {precision}"]["status"] == "PASS"
        assert set(checks[f"batches onnxruntime {precision}"]["data"]["max_abs_diff"]) == set(
            map(str, first_run.BATCH_SIZES)
        )
        assert checks[f"threads onnxruntime {precision}"]["status"] == "PASS"
        assert checks[f"sample onnxruntime/cpu {precision}"]["status"] == "PASS"
    if checks["engines"]["status"] == "SKIP":
        assert checks["engines"]["detail"] and checks["gpu"]["status"] in ("SKIP", "PASS")
    assert all(c["detail"] for c in report["checks"] if c["status"] == "SKIP")
    assert f"{report['counts']['PASS']} PASS" in result.output


def test_first_run_fails_when_a_batch_changes_an_answer(bundle_dir, monkeypatch):
    from edgecls import first_run
    from edgecls.runtime.backends.onnxruntime import OnnxRuntimeBackend

    original = OnnxRuntimeBackend._infer

    def changed(self, batch):
        logits, features = original(self, batch)
        return logits + (len(batch) > 64) * 0.5, features

    monkeypatch.setattr(OnnxRuntimeBackend, "_infer", changed)
    report = first_run.run_first_run(bundle_dir)
    failed = [c for c in report["checks"] if c["status"] == "FAIL"]
    assert not report["ok"] and failed and all(c["name"].startswith("batches") for c in failed)
    assert "65, 130 differ" in failed[0]["detail"]


@pytest.fixture()
def engine_row(bundle_dir, monkeypatch):
    """A TensorRT FP32 row in doctor's table, run here by ONNX Runtime on model.onnx in its place (no GPU here): what
    doctor does around an engine, without one."""
    from edgecls.runtime import Classifier

    candidates, load = doctor._candidates, Classifier.load

    def fake_load(path, backend="auto", precision="auto", device="auto", **kw):
        if backend != "tensorrt":
            return load(path, backend=backend, precision=precision, device=device, **kw)
        clf = load(path, backend="onnxruntime", precision="fp32", device="cpu")
        clf.backend.source_graph, clf.backend.engine_path = "model.onnx", bundle_dir / "model.onnx"
        return clf

    monkeypatch.setattr(
        doctor, "_candidates", lambda b, env: [*candidates(b, env), ("tensorrt", "cuda:0", "fp32", None)]
    )
    monkeypatch.setattr(doctor.Classifier, "load", staticmethod(fake_load))


def _engine(report):
    return next(r for r in report["rows"] if r["backend"] == "tensorrt" and r["status"] != "not run")


def test_without_polygraphy_the_engine_row_says_so_instead_of_a_traceback(bundle_dir, engine_row, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "polygraphy", None)  # `import polygraphy...` now raises ImportError
    monkeypatch.setattr(
        doctor.importlib.util, "find_spec", lambda name, *a: None if name == "polygraphy" else spec(name)
    )
    report = doctor.run_doctor(bundle_dir, iterations=1)
    row = _engine(report)
    assert row["status"] == "ok" and "polygraphy not installed" in row["polygraphy"]["skipped"] and report["ok"]


def test_a_polygraphy_that_cannot_load_cuda_is_a_fail_row_with_the_reason(bundle_dir, engine_row, monkeypatch):
    def cannot(*args):
        raise OSError("libcudart.so.12: cannot open shared object file")

    monkeypatch.setattr(doctor, "polygraphy_check", cannot)
    report = doctor.run_doctor(bundle_dir, iterations=1)
    row = _engine(report)
    assert row["status"] == "FAIL" and "libcudart.so.12" in row["why"] and not report["ok"]


def test_a_tensorrt_only_target_is_checked_against_the_logits_export_recorded(bundle_dir, engine_row, monkeypatch):
    """No ONNX Runtime (a Jetson with JetPack's TensorRT alone): the ONNX Runtime rows are skipped with the reason, and
    the engine is compared with model.onnx's logits on the sample as export computed them."""
    monkeypatch.setattr(doctor, "onnxruntime_missing", lambda: "onnxruntime is not installed (test)")
    monkeypatch.setattr(doctor, "polygraphy_check", lambda *a: pytest.fail("Polygraphy needs ONNX Runtime"))
    monkeypatch.setattr(
        doctor.importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else spec(name)
    )
    report = doctor.run_doctor(bundle_dir, iterations=1)
    assert report["reference"]["kind"] == "logits recorded at export" and report["ok"], report["verdict"]
    skipped = [r for r in report["rows"] if r["backend"] == "onnxruntime"]
    assert skipped and all(r["status"] == "not run" and "onnxruntime is not installed" in r["why"] for r in skipped)
    row = _engine(report)
    assert row["agreement"] == 1.0 and row["max_abs_diff"] < 1e-4 and "skipped" in row["polygraphy"]
    assert "the FP32 logits recorded at export" in report["verdict"]


def test_a_near_tie_flipping_on_another_cpu_does_not_fail_the_reference(bundle_dir, tmp_path):
    """Export's FP32 top-1 on the sample is reproduced within one image (a near tie may flip with the summation order
    of another CPU), not exactly; two images is a real difference."""
    for images, ok in ((1, True), (2, False)):
        copy = tmp_path / f"off-by-{images}"
        shutil.copytree(bundle_dir, copy)
        manifest = json.loads((copy / MANIFEST).read_text())
        row = manifest["accuracy"]["sample"]["files"]["model.onnx"]
        row["top1"] += images / manifest["accuracy"]["sample"]["samples"]
        (copy / MANIFEST).write_text(json.dumps(seal(manifest)))
        assert doctor.run_doctor(copy, iterations=1)["ok"] is ok, images


def test_first_run_on_a_tensorrt_only_target_skips_onnx_runtime_with_the_reason(bundle_dir, engine_row, monkeypatch):
    from edgecls import first_run

    monkeypatch.setattr(doctor, "onnxruntime_missing", lambda: "onnxruntime is not installed (test)")
    monkeypatch.setattr(
        doctor.importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else spec(name)
    )
    report = first_run.run_first_run(bundle_dir)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"], [c for c in report["checks"] if c["status"] == "FAIL"]
    assert checks["sample tensorrt/cuda:0 fp32"]["status"] == "PASS"
    assert checks["sample onnxruntime/cpu int8"]["status"] == "SKIP"
    assert "onnxruntime is not installed" in checks["sample onnxruntime/cpu int8"]["detail"]
