import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

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
from edgecls.zoo.pretrained import model_card

FILES = {
    "model.pt",
    "model.onnx",
    "model.fp16.onnx",
    "model.int8.onnx",
    "model.int8.trt.onnx",
    "sample.npz",
    "features.npz",
}


def test_bundle_has_every_file_and_a_complete_manifest(bundle_dir):
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    assert set(manifest["files"]) == FILES
    assert manifest["input"]["shape"] == [-1, 3, 32, 32] and manifest["input"]["color"] == "rgb"
    assert manifest["classes"][0] == "airplane"
    assert manifest["calibration"]["images"] == 100 and manifest["calibration"]["test_images_used"] == 0
    assert manifest["calibration"]["per_class"] == [10] * 10
    flavours = {name: e["flavour"] for name, e in manifest["files"].items()}
    assert flavours["model.int8.onnx"] == "u8s8" and flavours["model.int8.trt.onnx"] == "modelopt"
    tensorrt = manifest["calibration"]["tensorrt"]
    assert tensorrt["tool"].startswith("nvidia-modelopt") and tensorrt["high_precision"] == "fp16"
    assert tensorrt["quantized_inputs_of"]["Conv"] >= 1 and tensorrt["quantize_linear"] == tensorrt["dequantize_linear"]
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


def _activation_quantizers(path):
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return {
        n.input[0]: (inits[n.input[1]], inits[n.input[2]])
        for n in graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits
    }, graph


def test_int8_graphs_are_what_each_target_needs(bundle_dir):
    cpu, _ = _activation_quantizers(bundle_dir / "model.int8.onnx")
    assert cpu and all(zero.dtype == np.uint8 for _, zero in cpu.values())
    trt, graph = _activation_quantizers(bundle_dir / "model.int8.trt.onnx")
    assert trt and all(zero.dtype == np.int8 and not zero.any() for _, zero in trt.values())  # symmetric signed
    weights = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in trt]
    assert weights and all(any(a.name == "axis" for a in n.attribute) for n in weights), "weights quantized per channel"
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    consumers = {n.op_type for n in graph.node if dequantized.intersection(n.input)}
    assert "Clip" not in consumers and "Conv" in consumers  # Q/DQ only where TensorRT fuses it


def test_tensorrt_graph_holds_the_calibration_range_of_its_first_quantized_tensor(bundle_dir, cifar_root):
    """That tensor's scale, computed by hand: max |t| over the FP32 graph run on the calibration images / 127."""
    import onnxruntime as ort

    from edgecls.calibration.reader import calibration_images
    from edgecls.data import load_dataset
    from edgecls.data.split import train_val_split
    from edgecls.runtime.preprocess import Preprocessor

    trt, _ = _activation_quantizers(bundle_dir / "model.int8.trt.onnx")
    name, (scale, _) = next(iter(trt.items()))
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    train, _ = train_val_split(
        load_dataset("cifar10", "train", cifar_root), manifest["accuracy"]["validation"]["split"]
    )
    bundle = Bundle.open(bundle_dir)
    x = Preprocessor(bundle.input, bundle.preprocess).batch_from_images(calibration_images(train, 100).images)
    fp32 = onnx.load(str(bundle_dir / "model.onnx"))
    fp32.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    values = ort.InferenceSession(fp32.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [name], {"input": x}
    )[0]
    assert float(scale) == pytest.approx(np.abs(values).max() / 127, rel=2e-3)  # stored as FP16


def test_reexport_is_idempotent(bundle_dir, trained_ckpt, cifar_root, tmp_path):
    again = tmp_path / "again"
    export_bundle(
        str(trained_ckpt),
        ExportOptions(
            fp16=True, int8=True, out=str(again), data_dir=str(cifar_root), calib_images=100, max_accuracy_drop=5.0
        ),
    )
    export_bundle(
        str(trained_ckpt),
        ExportOptions(
            fp16=True, int8=True, out=str(again), data_dir=str(cifar_root), calib_images=100, max_accuracy_drop=5.0
        ),
    )
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


def test_accuracy_drop_over_threshold_fails_and_writes_nothing(trained_ckpt, cifar_root, tmp_path, monkeypatch):
    from edgecls.export.scoring import Scorer

    def int8_half_as_good(self):
        scored = real_rows(self)
        for split in scored.values():
            for row in split["files"].values():
                row["top1"] /= 2 if row["precision"] == "int8" else 1
        return scored

    real_rows = Scorer.rows
    monkeypatch.setattr(Scorer, "rows", int8_half_as_good)
    out = tmp_path / "strict"
    with pytest.raises(AccuracyDropError, match="--calib-images"):
        export_bundle(str(trained_ckpt), ExportOptions(int8=True, out=str(out), data_dir=str(cifar_root)))
    assert not out.exists() and not list(tmp_path.iterdir())  # no bundle, no staging directory left behind
    with pytest.raises(BundleError, match="not found"):
        Classifier.load(out)


def _accuracy(val_int8: float, test_int8: float) -> dict:
    def split(int8: float) -> dict:
        return {
            "samples": 100,
            "files": {
                "model.onnx": {"precision": "fp32", "top1": 0.90},
                "model.int8.onnx": {"precision": "int8", "top1": int8},
            },
        }

    return {"validation": split(val_int8), "test": split(test_int8)}


def test_int8_gate_reads_the_validation_split_never_the_test_set():
    from edgecls.export.int8 import check_int8_drop as _check_int8_drop

    options = ExportOptions(int8=True, max_accuracy_drop=1.0)
    _check_int8_drop(_accuracy(val_int8=0.895, test_int8=0.70), options, Path("b"))  # a bad test figure decides nothing
    with pytest.raises(AccuracyDropError, match="validation split"):
        _check_int8_drop(_accuracy(val_int8=0.85, test_int8=0.90), options, Path("b"))


LOGIT_RTOL = 1e-3  # float32 sums in another order, relative to the largest |Δ logit|; seen: 2.4e-5 on Zen 3


def test_graphs_scored_side_by_side_score_what_each_scores_alone(bundle_dir, cifar_root, monkeypatch):
    """Export scores every graph's chunks on all cores at once; each figure must be what scoring that graph alone,
    in order, with ONNX Runtime's default threads, gives (chunks put back in the wrong order would not be).

    The two ways run different thread counts, so kernels may sum in another order: on an AVX2-only Zen 3 the INT8
    TensorRT graph's largest |Δ logit| came out 0.0405111 one way and 0.0405102 the other. Held within
    `LOGIT_RTOL` (logits of about ±20 in float32), and top-1 within one near-tied image; a chunk out of place moves
    both by orders of magnitude more."""
    from edgecls.data import load_for_model
    from edgecls.export import scoring
    from edgecls.runtime.preprocess import Preprocessor

    monkeypatch.setattr(scoring, "CHUNK", 48)
    bundle = Bundle.open(bundle_dir)
    test = load_for_model("cifar10", "test", str(cifar_root), bundle.input, bundle.preprocess)
    prep = Preprocessor(bundle.input, bundle.preprocess)
    files = bundle.manifest.raw["files"]
    graphs = [name for name, entry in files.items() if entry["format"] == "onnx"]
    with scoring.Scorer({"test": test}, prep) as scorer:
        for name in graphs:
            scorer.add(bundle_dir / name, files[name])
        scored = scorer.rows()["test"]["files"]
    assert len(graphs) >= 3 and set(scored) == set(graphs)
    alone = {
        name: scoring.onnx_scores(
            scoring.session(bundle_dir / name, scoring.evaluation_target(files[name])), test.images, prep
        )
        for name in graphs
    }
    for name in graphs:
        top1 = np.mean(alone[name].argmax(1) == test.labels)
        assert abs(scored[name]["top1"] - top1) <= 1 / len(test.labels) + 1e-12, name
        largest = np.abs(alone[name] - alone["model.onnx"]).max()
        assert scored[name]["max_abs_diff_vs_fp32"] == pytest.approx(largest, rel=LOGIT_RTOL, abs=1e-6), name


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
    from edgecls.bundle import file_entry, seal

    path = bundle_copy / "model.onnx"
    path.write_bytes(b"not an onnx model at all")
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    manifest["files"]["model.onnx"] = file_entry(path, "onnx", "fp32", "any")
    (bundle_copy / MANIFEST).write_text(json.dumps(seal(manifest)))
    with pytest.raises(BundleError, match="cannot be loaded"):
        Classifier.load(bundle_copy, precision="fp32")


def test_bad_sources_and_options(tmp_path):
    with pytest.raises(CheckpointError, match="no bundled weights|edgecls train"):
        export_bundle("vgg16", ExportOptions(out=str(tmp_path)))
    with pytest.raises(ConfigError, match="Did you mean"):
        export_bundle("lenet55", ExportOptions(out=str(tmp_path)))
    with pytest.raises(ConfigError, match="--target"):
        export_bundle("lenet5", ExportOptions(out=str(tmp_path), target="gpu"))


def test_bundled_weights_export_with_the_calibration_method_their_card_chose(cifar_root, tmp_path, monkeypatch):
    """A card's `calibration_method` (chosen on the validation split) is export's default; an explicit option wins."""
    from edgecls.zoo import pretrained

    card = replace(model_card("lenet5"), calibration_method={"method": "entropy"})
    monkeypatch.setattr(pretrained, "model_card", lambda name, dataset="cifar10": card)
    options = ExportOptions(
        int8=True, target="cpu", data_dir=str(cifar_root), calib_images=50, allow_accuracy_drop=True
    )
    manifest = export_bundle("lenet5", ExportOptions(**{**options.__dict__, "out": str(tmp_path / "a")}))
    assert manifest["calibration"]["method"] == "entropy"
    explicit = export_bundle(
        "lenet5", ExportOptions(**{**options.__dict__, "calib_method": "minmax", "out": str(tmp_path / "b")})
    )
    assert explicit["calibration"]["method"] == "minmax"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_reexport_leaves_the_previous_bundle_whole(bundle_dir, trained_ckpt, cifar_root, tmp_path):
    out = tmp_path / "kx"
    shutil.copytree(bundle_dir, out)
    (out / "bench.json").write_text("{}")  # a user's own file in the bundle directory
    before = Bundle.open(out).digest
    cmd = [
        sys.executable,
        "-m",
        "edgecls",
        "export",
        str(trained_ckpt),
        "--out",
        str(out),
        "--data-dir",
        str(cifar_root),
        "--int8",
        "--calib-images",
        "100",
        "--max-accuracy-drop",
        "5",
    ]
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def new_onnx_written() -> bool:  # wherever export writes: kill it once it has written a new graph
        paths = [out / "model.onnx", *tmp_path.glob(".kx.*/model.onnx")]
        return any(p.is_file() and p.stat().st_mtime > started for p in paths)

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not new_onnx_written():
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert new_onnx_written(), "the export was killed before it wrote anything"
    assert Bundle.open(out).digest == before and Bundle.open(out).verify_all()

    with pytest.raises(Exception, match="not found|does not exist"):  # a failing export changes nothing either
        export_bundle(str(trained_ckpt), ExportOptions(out=str(out), data_dir=str(tmp_path / "nowhere")))
    assert Bundle.open(out).digest == before

    manifest = export_bundle(str(trained_ckpt), ExportOptions(out=str(out), data_dir=str(cifar_root)))
    assert Bundle.open(out).digest == manifest["digest"] != before
    assert not list(tmp_path.glob(".kx.*")), "the killed export's staging directory was not cleaned up"
    assert (out / "bench.json").read_text() == "{}"


def test_a_second_writer_of_the_same_bundle_fails_instead_of_replacing_the_first(tmp_path):
    from edgecls.errors import BusyError
    from edgecls.fileio import staged_directory

    with staged_directory(tmp_path / "b") as first:
        (first / "mine").write_text("first")
        with pytest.raises(BusyError, match=rf"pid {os.getpid()}\) is writing"), staged_directory(tmp_path / "b"):
            pass
        with staged_directory(tmp_path / "other"):  # another bundle beside it is no conflict
            pass
    assert (tmp_path / "b" / "mine").read_text() == "first"
    with staged_directory(tmp_path / "b") as again:  # the lock is given back
        (again / "mine").write_text("second")
    assert (tmp_path / "b" / "mine").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "other"]  # no lock file left beside them


def test_export_refuses_to_replace_a_directory_that_is_not_a_bundle(trained_ckpt, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an edgecls bundle"):
        export_bundle(str(trained_ckpt), ExportOptions(out=str(tmp_path)))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_half_written_files_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    from edgecls.fileio import atomic_write_bytes

    dead = tmp_path / f".best.pt.write-{_dead_pid()}-k_z9qx.partial"  # mkstemp's names are not hex
    live = tmp_path / f".best.pt.write-{os.getpid()}-3c4d.partial"
    dead.write_bytes(b"half")
    live.write_bytes(b"half")
    atomic_write_bytes(tmp_path / "best.pt", b"whole")
    assert not dead.exists() and live.exists() and (tmp_path / "best.pt").read_bytes() == b"whole"


def test_a_folder_model_trained_with_image_size_exports_evaluates_and_replays(tmp_path, monkeypatch):
    import cv2
    from synthetic import make_images, run_replay
    from typer.testing import CliRunner

    from edgecls.camera.loop import CameraOptions
    from edgecls.cli import app
    from edgecls.train import TrainConfig, train

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "shapes"
    for split, seed in (("train", 1), ("test", 2)):
        images, labels = make_images(60, num_classes=3, size=48, seed=seed)
        for i, (img, label) in enumerate(zip(images, labels, strict=True)):
            path = root / split / "abc"[label] / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.resize(img, (72, 48))[..., ::-1])  # 72×48 pictures, not square
    run = tmp_path / "run"
    train(
        TrainConfig(
            model="lenet5",
            dataset="folder",
            data_dir=str(root),
            out=str(run),
            epochs=1,
            batch_size=16,
            image_size=24,
            warmup_epochs=0.0,
        ),
        quiet=True,
    )
    assert load_checkpoint(run / "best.pt")["preprocess"] == {"crop": "center", "resize": "area", "crop_fraction": 1.0}
    manifest = export_bundle(str(run), ExportOptions(out=str(tmp_path / "b"), data_dir=str(root)))
    assert manifest["input"]["size"] == 24 and manifest["accuracy"]["test"]["samples"] == 60
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "b"), "--data-dir", str(root)])
    assert result.exit_code == 0, result.output
    clf = Classifier.load(tmp_path / "b", backend="onnxruntime", precision="fp32")
    summary = run_replay(
        clf, CameraOptions(replay_test_set="folder", data_dir=str(root), headless=True, frame_size="96x72")
    )
    assert summary["frames"] == 60 and summary["accuracy"] == pytest.approx(
        manifest["accuracy"]["test"]["files"]["model.onnx"]["top1"]
    )


def test_tensorrt8_gets_an_int8_graph_it_can_parse_or_a_refusal_that_says_how(
    trained_ckpt, cifar_root, bundle_dir, tmp_path
):
    """TensorRT 8.6's ONNX importer parses opsets ≤ 17 and float32 Q/DQ scales; ModelOpt's default graph is opset 19
    with
    FP16 scales. --tensorrt8 adds one it can build (gated like the others); without it, 8.x is told what to do."""
    import onnx

    from edgecls.bundle import Bundle
    from edgecls.errors import ExportError as Refused
    from edgecls.runtime.engines import engine_sources

    out = tmp_path / "trt8"
    manifest = export_bundle(
        str(trained_ckpt),
        ExportOptions(
            int8=True, out=str(out), data_dir=str(cifar_root), calib_images=100, max_accuracy_drop=5.0, tensorrt8=True
        ),
    )
    graph = onnx.load(str(out / "model.int8.trt8.onnx"))
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [17]
    scales = {i.name: i.data_type for i in graph.graph.initializer}
    qdq = [n for n in graph.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and {scales[n.input[1]] for n in qdq if n.input[1] in scales} == {onnx.TensorProto.FLOAT}
    assert not [n for n in graph.graph.node if n.op_type == "Cast"]
    assert manifest["calibration"]["tensorrt8"]["high_precision"] == "fp32"
    assert "model.int8.trt8.onnx" in manifest["accuracy"]["validation"]["files"]
    assert engine_sources(Bundle.open(out), "int8", True, strongly_typed=False).name == "model.int8.trt8.onnx"
    assert engine_sources(Bundle.open(out), "int8", False, strongly_typed=True).name == "model.int8.trt.onnx"
    with pytest.raises(Refused, match="re-export with --tensorrt8"):
        engine_sources(Bundle.open(bundle_dir), "int8", True, strongly_typed=False)


def test_modelopt_calibrating_in_batches_writes_the_graph_it_writes_one_image_at_a_time(tmp_path):
    """Batches of 32 instead of ModelOpt's one image per call; its rule that a Gemm with one row (a camera's batch
    of 1) stays unquantized must still hold for a head wide enough to be quantized at 32 rows."""
    import torch

    from edgecls.calibration.tensorrt_qdq import quantize_for_tensorrt

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 100),
    ).eval()
    src = tmp_path / "wide_head.onnx"
    torch.onnx.export(
        net, torch.zeros(1, 3, 8, 8), src, input_names=["input"], dynamic_axes={"input": {0: "n"}}, dynamo=False
    )
    images = np.random.default_rng(0).standard_normal((64, 3, 8, 8)).astype(np.float32)
    batched = quantize_for_tensorrt(src, tmp_path / "batched.onnx", images, "input")
    single = quantize_for_tensorrt(src, tmp_path / "single.onnx", images, "input", fixed_batch=True)
    assert (tmp_path / "batched.onnx").read_bytes() == (tmp_path / "single.onnx").read_bytes()
    assert batched == single and "Gemm" not in batched["quantized_inputs_of"]


def test_the_accuracy_table_says_when_validation_images_may_be_training_images():
    """For a model trained elsewhere, export draws the validation split from the training part: only the manifest
    said so, not the table the user reads."""
    from edgecls.console import console
    from edgecls.export.pipeline import _print_accuracy

    def accuracy(chosen_by):
        files = {"model.onnx": {"precision": "fp32", "top1": 0.9}}
        split = {"dataset": "cifar10-test", "samples": 10, "files": files}
        return {"validation": {**split, "split": {"chosen_by": chosen_by}}, "test": split}

    for chosen_by, warned in (("export: the model was trained elsewhere", True), ("training", False)):
        with console.capture() as captured:
            _print_accuracy(accuracy(chosen_by), {"model.onnx": 1000})
        assert bool(re.search(r"may\s+have\s+trained\s+on", captured.get())) is warned
