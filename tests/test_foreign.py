"""A model edgecls did not write — a user's module file or ONNX file, trained elsewhere with its own preprocessing —
exported, evaluated and replayed exactly as a zoo model is."""

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from conftest import IMAGENET_MEAN, IMAGENET_STD, foreign_options, plain_cifar
from synthetic import run_replay

from edgecls.bundle import Bundle
from edgecls.camera.loop import CameraOptions
from edgecls.errors import CheckpointError, ConfigError, ExportError
from edgecls.export.pipeline import ExportOptions, export_bundle
from edgecls.export.sources import match_keys, normalization
from edgecls.imaging import Normalization
from edgecls.runtime import Classifier
from edgecls.runtime.preprocess import Preprocessor


def _frames(images: np.ndarray, scale: int = 3) -> list[np.ndarray]:
    """Test images as BGR camera frames, each pixel enlarged `scale` times."""
    return [
        cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2BGR), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        for im in images
    ]


@pytest.mark.parametrize("which", ["foreign_bundle", "foreign_onnx_bundle"])
def test_the_deployed_graph_scores_what_plain_pytorch_scores(which, request, foreign, cifar_root):
    """Frames through the bundle's recorded preprocessing give plain PyTorch's logits: a mean applied in 0–255 units,
    swapped channels or a lost crop would move them far beyond 1e-3."""
    bundle_dir = request.getfixturevalue(which)
    manifest = Bundle.open(bundle_dir).manifest.raw
    assert manifest["preprocess"]["normalization"] == {
        "kind": "imagenet",
        "mean": [v * 255 for v in IMAGENET_MEAN],
        "std": [v * 255 for v in IMAGENET_STD],
    }
    assert manifest["input"]["color"] == "rgb" and manifest["preprocess"]["crop_fraction"] == 1.0
    clf = Classifier.load(bundle_dir, precision="fp32")
    images, labels = plain_cifar(cifar_root, "test")
    logits = np.stack([clf.predict(f).logits for f in _frames(images)])
    np.testing.assert_allclose(logits, foreign["logits"], atol=1e-3)
    test = manifest["accuracy"]["test"]["files"]
    assert abs(test["model.onnx"]["top1"] - foreign["top1"]) <= 0.0005
    val = manifest["accuracy"]["validation"]["files"]
    for name in ("model.int8.onnx", "model.int8.trt.onnx"):
        assert val["model.onnx"]["top1"] - val[name]["top1"] <= 0.01, name


def test_the_manifest_says_what_each_source_was_compared_with(foreign_bundle, foreign_onnx_bundle):
    module, onnx_file = Bundle.open(foreign_bundle).manifest.raw, Bundle.open(foreign_onnx_bundle).manifest.raw
    assert module["parity"]["reference"] == "PyTorch" and module["parity"]["max_abs_diff"] < 1e-3
    assert "no PyTorch model" in onnx_file["parity"]["reference"] and onnx_file["parity"]["max_abs_diff"] < 1e-3
    assert "made dynamic" in " ".join(onnx_file["parity"]["import"]["steps"])
    assert onnx_file["input"]["shape"] == [-1, 3, 32, 32]
    assert module["accuracy"]["validation"]["split"]["chosen_by"].startswith("export")
    assert "model.pt" not in module["files"] and "model.pt" not in onnx_file["files"]


def test_camera_replay_scores_exactly_what_eval_scores(foreign_onnx_bundle, cifar_root):
    from edgecls.data import load_for_model
    from edgecls.evaluate import evaluate_classifier

    clf = Classifier.load(foreign_onnx_bundle, precision="int8")
    test = load_for_model("cifar10", "test", cifar_root, clf.bundle.input, clf.bundle.preprocess)
    summary = run_replay(clf, CameraOptions(replay_test_set="cifar10", data_dir=str(cifar_root), headless=True))
    assert summary["replay"]["resampled"] is False
    assert summary["accuracy"] == evaluate_classifier(clf, test)["top1"]


def test_a_fixed_batch_graph_runs_image_by_image_everywhere(foreign, cifar_root, tmp_path):
    """A graph that bakes in the batch stays at 1, and no backend call ever hands it more than one image."""
    out = tmp_path / "batch_one"
    manifest = export_bundle(
        str(foreign["batch_one_onnx"]),
        ExportOptions(
            int8=True, out=str(out), data_dir=str(cifar_root), calib_images=100, foreign=foreign_options(), target="cpu"
        ),
    )
    assert manifest["input"]["shape"] == [1, 3, 32, 32]
    assert "batch fixed at 1" in " ".join(manifest["parity"]["import"]["steps"])
    assert abs(manifest["accuracy"]["test"]["files"]["model.onnx"]["top1"] - foreign["top1"]) <= 0.0005
    clf = Classifier.load(out, precision="fp32")
    images, _ = plain_cifar(cifar_root, "test")
    batch = clf.predict_batch(_frames(images[:5]))
    np.testing.assert_allclose(np.stack([p.logits for p in batch]), foreign["logits"][:5], atol=1e-3)
    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from edgecls.serving.repository import write_triton_repository

    fp32 = next(p for p in write_triton_repository(out, tmp_path / "repo") if p.name.endswith("_fp32"))
    config = text_format.Parse((fp32 / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (
        config.max_batch_size == 0
        and list(config.input[0].dims) == [1, 3, 32, 32]
        and not config.HasField("dynamic_batching")
    )


def test_an_imagenet_crop_is_recorded_and_applied(foreign, cifar_root, tmp_path):
    """--resize-shorter 36 --size 32: the runtime crops the centred 32/36 of a frame's short side, as torchvision's
    Resize(36) + CenterCrop(32) does, and replay at a frame whose crop is a whole multiple of 32 is still exact."""
    from torchvision.transforms import v2

    out = tmp_path / "cropped"
    manifest = export_bundle(
        foreign["module"],
        ExportOptions(
            out=str(out),
            data_dir=str(cifar_root),
            foreign=foreign_options(weights=str(foreign["weights"]), size=32, resize_shorter=36),
        ),
    )
    assert manifest["preprocess"]["crop_fraction"] == pytest.approx(32 / 36)
    bundle = Bundle.open(out)
    prep = Preprocessor(bundle.input, bundle.preprocess)
    yy, xx = np.mgrid[0:480, 0:640]
    frame = np.stack([xx * 255 / 640, yy * 255 / 480, (xx + yy) * 255 / 1120], axis=2).astype(np.uint8)  # smooth, RGB
    reference = v2.Compose([v2.Resize(36, antialias=True), v2.CenterCrop(32)])(
        torch.from_numpy(frame.transpose(2, 0, 1))
    )
    ours = prep.fit(frame, color="rgb").astype(np.float32)
    uncropped = Preprocessor(bundle.input, replace(bundle.preprocess, crop_fraction=1.0)).fit(frame, color="rgb")
    assert np.abs(ours - reference.numpy().transpose(1, 2, 0)).max() <= 1.0  # measured: mean 0.22, max 1 grey level
    assert np.abs(uncropped.astype(np.float32) - reference.numpy().transpose(1, 2, 0)).max() > 10  # measured: 14

    from edgecls.data import load_for_model
    from edgecls.evaluate import evaluate_classifier

    clf = Classifier.load(out)
    test = load_for_model("cifar10", "test", cifar_root, clf.bundle.input, clf.bundle.preprocess)
    summary = run_replay(
        clf, CameraOptions(replay_test_set="cifar10", data_dir=str(cifar_root), headless=True, frame_size="360x288")
    )
    assert summary["replay"]["resampled"] is False
    assert (
        summary["accuracy"]
        == evaluate_classifier(clf, test)["top1"]
        == manifest["accuracy"]["test"]["files"]["model.onnx"]["top1"]
    )


def test_mean_and_std_in_pixel_units_are_refused_with_the_fix():
    with pytest.raises(
        ConfigError, match=r"looks like 0–255 pixel values.*divide by 255, e.g. --mean 0\.485,0\.456,0\.406"
    ):
        normalization((123.675, 116.28, 103.53), IMAGENET_STD, 3)
    with pytest.raises(ConfigError, match="--std has 2 values but the model takes 3"):
        normalization(IMAGENET_MEAN, (0.2, 0.2), 3)
    assert normalization((0.5,), (0.25,), 3) == Normalization("given", (127.5,) * 3, (63.75,) * 3)


def test_prefixes_are_stripped_only_when_every_key_then_matches():
    t = torch.zeros(1)
    expected = {"body.0.weight", "classifier.weight", "body.1.num_batches_tracked"}
    assert set(match_keys({"module.body.0.weight": t, "module.classifier.weight": t}, expected)) == {
        "body.0.weight",
        "classifier.weight",
    }
    own = {"model.body.weight", "model.head.weight"}  # the model's own names start with a strippable prefix
    assert set(match_keys({"model.body.weight": t, "model.head.weight": t}, own)) == own
    with pytest.raises(CheckpointError, match=r"missing classifier\.weight; unexpected module\.classifier\.weight"):
        match_keys({"body.0.weight": t, "module.classifier.weight": t}, expected)  # prefixed in part: not stripped
    with pytest.raises(
        CheckpointError, match=r"missing body\.0\.weight, classifier\.weight; unexpected module\.fc\.weight"
    ):
        match_keys({"module.fc.weight": t}, expected)


def test_weights_in_every_usual_container_load(foreign, tmp_path):
    from edgecls.export.sources import build_module, load_weights, read_state_dict

    state = read_state_dict(str(foreign["weights"]))
    bare = {k.removeprefix("module."): v for k, v in state.items()}
    for i, container in enumerate((bare, {"model": state}, {"model_state_dict": bare, "optimizer": {}, "epoch": 3})):
        torch.save(container, tmp_path / f"w{i}.pt")
        module = build_module(foreign["module"], {})
        load_weights(module, str(tmp_path / f"w{i}.pt"))
        assert torch.equal(module.state_dict()["classifier.weight"], bare["classifier.weight"])
    torch.save({"epoch": 3, "best": 0.5}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="none of them a state dict"):
        read_state_dict(str(tmp_path / "empty.pt"))


def test_inputs_edgecls_cannot_feed_are_refused_by_name(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgecls.export.onnx_import import inspect_input

    def graph(inputs, name):
        node = helper.make_node("Identity", [inputs[0].name], ["out"])
        model = helper.make_model(
            helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
        )
        onnx.save(model, tmp_path / name)
        return tmp_path / name

    nhwc = graph([helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 224, 224, 3])], "nhwc.onnx")
    with pytest.raises(ConfigError, match=r"'pixel_values' is 1×224×224×3 \(NHWC: channels last\)"):
        inspect_input(nhwc)
    two = graph([helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in ("a", "b")], "two.onnx")
    with pytest.raises(ConfigError, match="2 inputs \\('a', 'b'\\)"):
        inspect_input(two)
    ints = graph([helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3, 8, 8])], "int.onnx")
    with pytest.raises(ConfigError, match="'ids' is INT64"):
        inspect_input(ints)


def test_wrong_class_counts_and_sizes_name_both_numbers(foreign, cifar_root, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(5)))
    with pytest.raises(ExportError, match="gives 10 scores per image, but there are 5 classes"):
        export_bundle(
            str(foreign["onnx"]),
            ExportOptions(out=str(tmp_path / "b"), foreign=foreign_options(labels=str(labels), dataset=None)),
        )
    with pytest.raises(ConfigError, match="--size 64 conflicts with tiny.onnx's input 'input.1', which is 32×32"):
        export_bundle(str(foreign["onnx"]), ExportOptions(out=str(tmp_path / "b"), foreign=foreign_options(size=64)))
    with pytest.raises(ConfigError, match="apply to your own models"):
        export_bundle("lenet5", ExportOptions(out=str(tmp_path / "b"), foreign=foreign_options(size=32)))
    assert not (tmp_path / "b").exists()


def test_the_command_line_exports_a_module_file(foreign, cifar_root, tmp_path):
    from typer.testing import CliRunner

    from edgecls.cli import app

    out = tmp_path / "cli_bundle"
    result = CliRunner().invoke(
        app,
        [
            "export",
            foreign["module"],
            "--weights",
            str(foreign["weights"]),
            "--size",
            "32",
            "--mean",
            "0.485,0.456,0.406",
            "--std",
            "0.229,0.224,0.225",
            "--dataset",
            "cifar10",
            "--data-dir",
            str(cifar_root),
            "--out",
            str(out),
            "--name",
            "tiny",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "edgecls.json").read_text())
    assert manifest["model"] == "tiny" and manifest["source"].startswith("PyTorch module")
    assert abs(manifest["accuracy"]["test"]["files"]["model.onnx"]["top1"] - foreign["top1"]) <= 0.0005


def test_the_python_api_takes_a_module_object_and_an_onnx_path(foreign, cifar_root, tmp_path):
    import sys
    from pathlib import Path

    from edgecls.export.pipeline import export_model
    from edgecls.export.sources import build_module, load_weights

    net = build_module(foreign["module"], {})
    load_weights(net, str(foreign["weights"]))
    classes = [f"k{i}" for i in range(10)]
    for model, out in ((net, tmp_path / "api_module"), (foreign["onnx"], tmp_path / "api_onnx")):
        manifest = export_model(model, mean=IMAGENET_MEAN, std=IMAGENET_STD, size=32, classes=classes, out=str(out))
        assert manifest["classes"] == classes and manifest["accuracy"] is None and "dataset" not in manifest
        clf = Classifier.load(out)
        images, _ = plain_cifar(cifar_root, "test")
        np.testing.assert_allclose(clf.predict(_frames(images[:1])[0]).logits, foreign["logits"][0], atol=1e-3)
    assert Path(sys.modules[type(net).__module__].__file__).name == "tiny_net.py"


def test_unlabelled_images_calibrate_and_gate_on_agreement_with_fp32(foreign, cifar_root, tmp_path):
    """Only a folder of the scene's images, no labels: calibration on most, the gate on how often each INT8 graph
    answers as FP32 does on the rest, and the manifest says that is what it measured."""
    images, _ = plain_cifar(cifar_root, "test")
    scene = tmp_path / "scene"
    scene.mkdir()
    for i, frame in enumerate(_frames(images[:60], scale=4)):
        cv2.imwrite(str(scene / f"{i:03d}.png"), frame)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(10)))
    out = tmp_path / "unlabelled"
    manifest = export_bundle(
        str(foreign["onnx"]),
        ExportOptions(
            int8=True,
            out=str(out),
            calib_dir=str(scene),
            target="cpu",
            foreign=foreign_options(dataset=None, labels=str(labels)),
        ),
    )
    val = manifest["accuracy"]["validation"]
    assert val["samples"] == 12 and "agreement with model.onnx" in val["measure"] and "test" not in manifest["accuracy"]
    assert val["files"]["model.onnx"]["top1"] == 1.0 and val["files"]["model.int8.onnx"]["top1"] >= 0.99
    assert (
        10 <= manifest["calibration"]["images"] <= 48 and "unlabelled" in manifest["calibration"]["dataset"]
    )  # by FP32 class


def test_every_downstream_command_runs_on_a_foreign_bundle(foreign_onnx_bundle, cifar_root, tmp_path):
    """info, sign (+ info --public-key), eval, doctor, bench and export --triton on the bundle of a user's ONNX file."""
    import shutil

    from typer.testing import CliRunner

    from edgecls.cli import app

    bundle = tmp_path / "b"
    shutil.copytree(foreign_onnx_bundle, bundle)
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    assert "files verified" in ok("info", str(bundle))
    ok("keygen", str(tmp_path / "k.key"))
    ok("sign", str(bundle), "--key", str(tmp_path / "k.key"))
    assert "(verified)" in ok("info", str(bundle), "--public-key", str(tmp_path / "k.key.pub"))
    manifest = Bundle.open(bundle).manifest.raw
    report = tmp_path / "eval.json"
    ok("eval", str(bundle), "--data-dir", str(cifar_root), "--precision", "fp32", "--json", str(report))
    assert json.loads(report.read_text())["top1"] == manifest["accuracy"]["test"]["files"]["model.onnx"]["top1"]
    ok("doctor", str(bundle), "--iterations", "1")  # exits 1 unless every precision agrees with FP32 on the sample
    bench = tmp_path / "bench.json"
    ok(
        "bench",
        str(bundle),
        "--iterations",
        "5",
        "--warmup",
        "1",
        "--pace-ms",
        "2",
        "--data-dir",
        str(cifar_root),
        "--json",
        str(bench),
    )
    notes = json.loads(bench.read_text())["notes"]
    assert any("no PyTorch baseline" in n for n in notes)
    ok("export", str(foreign_onnx_bundle.parent / "missing.onnx"), "--help")  # the help names the new sources
    from edgecls.serving.repository import write_triton_repository

    assert write_triton_repository(str(bundle), str(tmp_path / "triton"))


def test_an_opset_11_file_is_converted_and_answers_as_before(foreign, tmp_path):
    import onnx
    import onnxruntime as ort
    import torch
    from tiny_net import TinyNet

    from edgecls.export.onnx_import import compare_with_source, import_onnx

    net = TinyNet().eval()
    src = tmp_path / "old.onnx"
    torch.onnx.export(
        net, (torch.zeros(1, 3, 32, 32),), str(src), dynamo=False, opset_version=11, input_names=["input.1"]
    )
    report = import_onnx(src, tmp_path / "model.onnx", 32)
    assert report["source_opset"] == 11 and report["opset"] == 13 and report["batch"] == "dynamic"
    assert [o.version for o in onnx.load(str(tmp_path / "model.onnx")).opset_import if o.domain in ("", "ai.onnx")] == [
        13
    ]
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    assert compare_with_source(src, tmp_path / "model.onnx", x) < 1e-4
    assert ort.InferenceSession(str(tmp_path / "model.onnx")).get_inputs()[0].name == "input"


def test_labels_that_are_not_the_datasets_classes_are_refused(foreign, cifar_root, tmp_path):
    from synthetic import CLASSES as CLASSES_CIFAR10

    from edgecls.errors import DatasetError

    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text("\n".join(reversed(CLASSES_CIFAR10)))
    with pytest.raises(DatasetError, match="differ \\(in another order\\)"):
        export_bundle(
            str(foreign["onnx"]),
            ExportOptions(
                out=str(tmp_path / "b"), data_dir=str(cifar_root), foreign=foreign_options(labels=str(shuffled))
            ),
        )
    other = tmp_path / "other.txt"
    other.write_text("\n".join(["zebra", *CLASSES_CIFAR10[1:]]))
    with pytest.raises(DatasetError, match="model only: \\['zebra'\\], dataset only: \\['airplane'\\]"):
        export_bundle(
            str(foreign["onnx"]),
            ExportOptions(
                out=str(tmp_path / "b"), data_dir=str(cifar_root), foreign=foreign_options(labels=str(other))
            ),
        )
    assert not (tmp_path / "b").exists()
