import json
import shutil
import struct

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgecls.bundle import MANIFEST, Bundle
from edgecls.errors import AccuracyDropError, BundleError, CheckpointError, ConfigError, ExportError, IntegrityError
from edgecls.export.onnx_export import check_parity
from edgecls.export.pipeline import ExportOptions, export_bundle
from edgecls.runtime import Classifier
from edgecls.train.checkpoint import load_checkpoint, model_from_checkpoint

FILES = {"model.pt", "model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8.trt.onnx", "calibration.cache"}


def test_bundle_has_every_file_and_a_complete_manifest(bundle_dir):
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    assert set(manifest["files"]) == FILES
    assert manifest["input"]["shape"] == [-1, 3, 32, 32] and manifest["input"]["color"] == "rgb"
    assert manifest["classes"][0] == "airplane"
    assert manifest["calibration"]["images"] == 100 and manifest["calibration"]["test_images_used"] == 0
    assert manifest["calibration"]["per_class"] == [10] * 10
    flavours = {name: e["flavour"] for name, e in manifest["files"].items()}
    assert flavours["model.int8.onnx"] == "u8s8" and flavours["model.int8.trt.onnx"] == "s8s8"
    for split, samples in (("validation", 50), ("test", 200)):  # 500 synthetic training images, 10% held out
        acc = manifest["accuracy"][split]
        assert set(acc["files"]) == {"model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8.trt.onnx"}
        assert acc["files"]["model.onnx"]["top1"] > 0.8 and acc["samples"] == samples
    assert manifest["accuracy"]["validation"]["split"] == {"seed": 0, "val_fraction": 0.1, "subset": None}
    assert manifest["accuracy"]["validation"]["dataset"].endswith(":val")
    assert manifest["parity"]["max_abs_diff"] < 1e-3
    assert manifest["tools"]["onnxruntime"] and manifest["tools"]["tensorrt"] is None
    assert Bundle.open(bundle_dir).verify_all()


def test_fp32_graph_has_dynamic_batch_and_fp16_keeps_fp32_io(bundle_dir):
    fp32 = onnx.load(str(bundle_dir / "model.onnx"))
    dim = fp32.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param and not dim.dim_value
    fp16 = onnx.load(str(bundle_dir / "model.fp16.onnx"))
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in fp16.graph.initializer)


def _zero_points(path):
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return [inits[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]


def test_int8_flavours_are_what_each_target_needs(bundle_dir):
    s8 = _zero_points(bundle_dir / "model.int8.trt.onnx")
    u8 = _zero_points(bundle_dir / "model.int8.onnx")
    assert s8 and all(z.dtype == np.int8 and not z.any() for z in s8)  # symmetric signed, zero point 0
    assert u8 and all(z.dtype == np.uint8 for z in u8)
    graph = onnx.load(str(bundle_dir / "model.int8.trt.onnx")).graph
    per_channel = [n for n in graph.node if n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute)]
    assert per_channel, "weights must be quantized per channel"


def test_tensorrt_calibration_cache_holds_the_calibration_range_of_the_input(bundle_dir, cifar_root):
    """The input's scale, computed by hand: max |x| over the normalized calibration images / 127 (symmetric INT8)."""
    from edgecls.calibration.reader import calibration_images
    from edgecls.data import load_dataset
    from edgecls.data.split import train_val_split
    from edgecls.runtime.preprocess import Preprocessor

    lines = (bundle_dir / "calibration.cache").read_text().splitlines()
    assert lines[0].startswith("TRT-") and lines[0].endswith("EntropyCalibration2")
    cache = {k: struct.unpack(">f", bytes.fromhex(v.strip()))[0] for k, v in (line.rsplit(":", 1) for line in lines[1:])}
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    train, _ = train_val_split(load_dataset("cifar10", "train", cifar_root), manifest["accuracy"]["validation"]["split"])
    calib = calibration_images(train, 100)
    x = Preprocessor(manifest["input"], manifest["preprocess"]).batch_from_images(calib.images)
    assert cache["input"] == pytest.approx(np.abs(x).max() / 127, rel=1e-5)


def test_reexport_is_idempotent(bundle_dir, trained_ckpt, cifar_root, tmp_path):
    again = tmp_path / "again"
    export_bundle(str(trained_ckpt), ExportOptions(fp16=True, int8=True, out=str(again), data_dir=str(cifar_root),
                                                   calib_images=100, max_accuracy_drop=5.0))
    export_bundle(str(trained_ckpt), ExportOptions(fp16=True, int8=True, out=str(again), data_dir=str(cifar_root),
                                                   calib_images=100, max_accuracy_drop=5.0))
    a = json.loads((bundle_dir / MANIFEST).read_text())["files"]
    b = json.loads((again / MANIFEST).read_text())["files"]
    assert {k: v["sha256"] for k, v in a.items()} == {k: v["sha256"] for k, v in b.items()}
    assert not list(again.glob("*.partial"))


def test_parity_failure_reports_the_largest_difference(bundle_dir, trained_ckpt):
    model = model_from_checkpoint(load_checkpoint(trained_ckpt))
    with __import__("torch").no_grad():
        model.classifier[-1].bias += 0.5
    batch = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with pytest.raises(ExportError, match=r"max \|Δ\| = 0\.5"):
        check_parity(model, bundle_dir / "model.onnx", batch)


def test_accuracy_drop_over_threshold_fails_and_leaves_no_manifest(trained_ckpt, cifar_root, tmp_path):
    out = tmp_path / "strict"
    with pytest.raises(AccuracyDropError, match="--calib-images"):
        export_bundle(str(trained_ckpt), ExportOptions(int8=True, out=str(out), data_dir=str(cifar_root), calib_images=10,
                                                       max_accuracy_drop=-1.0))
    assert (out / "model.int8.onnx").exists() and not (out / MANIFEST).exists()
    with pytest.raises(BundleError, match="not an edgecls bundle"):
        Classifier.load(out)


def _accuracy(val_int8: float, test_int8: float) -> dict:
    def split(int8: float) -> dict:
        return {"samples": 100, "files": {"model.onnx": {"precision": "fp32", "top1": 0.90},
                                          "model.int8.onnx": {"precision": "int8", "top1": int8}}}

    return {"validation": split(val_int8), "test": split(test_int8)}


def test_int8_gate_reads_the_validation_split_never_the_test_set():
    from edgecls.export.pipeline import _check_int8_drop

    options = ExportOptions(int8=True, max_accuracy_drop=1.0)
    _check_int8_drop(_accuracy(val_int8=0.895, test_int8=0.70), options)  # a bad test figure decides nothing
    with pytest.raises(AccuracyDropError, match="validation split"):
        _check_int8_drop(_accuracy(val_int8=0.85, test_int8=0.90), options)


@pytest.fixture()
def bundle_copy(bundle_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_edited_file_is_detected_by_hash(bundle_copy):
    path = bundle_copy / "model.int8.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        Classifier.load(bundle_copy, precision="int8")


def test_truncated_onnx_gives_a_clear_error(bundle_copy):
    path = bundle_copy / "model.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(IntegrityError, match="truncated"):
        Classifier.load(bundle_copy, precision="fp32")


def test_corrupt_onnx_matching_its_manifest_still_fails_clearly(bundle_copy):
    from edgecls.bundle import file_entry

    path = bundle_copy / "model.onnx"
    path.write_bytes(b"not an onnx model at all")
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    manifest["files"]["model.onnx"] = file_entry(path, "onnx", "fp32", "any")
    (bundle_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="cannot be loaded"):
        Classifier.load(bundle_copy, precision="fp32")


def test_bad_sources_and_options(tmp_path):
    with pytest.raises(CheckpointError, match="no bundled weights|edgecls train"):
        export_bundle("vgg16", ExportOptions(out=str(tmp_path)))
    with pytest.raises(ConfigError, match="Did you mean"):
        export_bundle("lenet55", ExportOptions(out=str(tmp_path)))
    with pytest.raises(ConfigError, match="--target"):
        export_bundle("lenet5", ExportOptions(out=str(tmp_path), target="gpu"))
