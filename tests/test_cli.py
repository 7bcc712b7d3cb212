import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgecls.cli import app

runner = CliRunner()


def test_help_is_a_tour():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("models", "train", "eval", "export", "build-engine", "camera", "bench", "baseline", "formats", "info"):
        assert command in result.output


def test_help_does_not_import_torch():
    code = "import sys; from edgecls.cli import app; assert 'torch' not in sys.modules; assert 'onnx' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_models_and_formats_tables():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "1,545,482" in result.output and "mobilenet_mod" in result.output
    result = runner.invoke(app, ["formats"])
    assert result.exit_code == 0 and "model.int8.trt.onnx" in result.output and "modelopt" in result.output


def test_info_verifies_a_bundle(bundle_dir):
    result = runner.invoke(app, ["info", str(bundle_dir)])
    assert result.exit_code == 0, result.output
    assert "6 files verified" in result.output


def test_eval_and_baseline_commands(trained_ckpt, cifar_root, tmp_path):
    result = runner.invoke(app, ["eval", str(trained_ckpt), "--data-dir", str(cifar_root), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "top-1" in result.output
    in_run_dir = runner.invoke(app, ["eval", str(trained_ckpt.parent), "--data-dir", str(cifar_root)])
    assert in_run_dir.exit_code == 0, in_run_dir.output
    assert re.findall(r"top-1 [\d.]+%", in_run_dir.output) == re.findall(r"top-1 [\d.]+%", result.output) != []
    assert "top-1" in result.output and (tmp_path / "r.confusion.png").exists() and (tmp_path / "r.examples.png").exists()
    result = runner.invoke(app, ["baseline", "knn", "--k", "3", "--metric", "l1", "--data-dir", str(cifar_root)])
    assert result.exit_code == 0, result.output
    assert "macro" in result.output


def test_eval_of_a_bundle_matches_the_accuracy_recorded_at_export(bundle_dir, cifar_root, tmp_path):
    import json

    recorded = json.loads((bundle_dir / "edgecls.json").read_text())["accuracy"]["test"]["files"]["model.int8.onnx"]["top1"]
    result = runner.invoke(app, ["eval", str(bundle_dir), "--precision", "int8", "--backend", "onnxruntime", "--device", "cpu",
                                 "--data-dir", str(cifar_root), "--json", str(tmp_path / "int8.json")])
    assert result.exit_code == 0, result.output
    assert "int8" in result.output and (tmp_path / "int8.confusion.png").exists()
    report = json.loads((tmp_path / "int8.json").read_text())
    assert report["samples"] == 200 and report["top1"] == pytest.approx(recorded, abs=1e-4)


def test_user_errors_exit_2_with_a_message(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgecls", "export", "lenet55", "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Did you mean lenet5" in result.stderr


def test_build_engine_without_tensorrt_says_what_to_run(bundle_dir):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed: tests/test_tensorrt.py builds engines for real")
    result = subprocess.run([sys.executable, "-m", "edgecls", "build-engine", str(bundle_dir)], capture_output=True, text=True)
    assert result.returncode == 2 and "TensorRT is not installed" in result.stderr and "build-engine" in result.stderr
