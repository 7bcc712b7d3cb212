"""Grey models end to end (Fashion-MNIST's 28×28 IDX files): colour camera frames become grey by one conversion,
OpenCV's
luma weights in `convert_channels`, the same in eval, replay and the runtime, so replay scores exactly what eval
scores."""

import cv2
import numpy as np
import pytest
from synthetic import run_replay, write_idx

from edgecls.camera.loop import CameraOptions
from edgecls.runtime import Classifier


@pytest.fixture(scope="module")
def grey_bundle(tmp_path_factory):
    from edgecls.export.pipeline import ExportOptions, export_bundle
    from edgecls.train import TrainConfig, train

    root = write_idx(tmp_path_factory.mktemp("fmnist"), "fashion-mnist", n_train=400, n_test=200)
    run = tmp_path_factory.mktemp("run")
    train(
        TrainConfig(
            model="lenet5",
            dataset="fashion-mnist",
            data_dir=str(root),
            out=str(run),
            epochs=6,
            batch_size=32,
            optimizer="adam",
            lr=0.005,
            weight_decay=0.0,
            warmup_epochs=0.5,
        ),
        quiet=True,
    )
    out = tmp_path_factory.mktemp("bundle") / "grey"
    export_bundle(
        str(run / "best.pt"),
        ExportOptions(
            int8=True, out=str(out), data_dir=str(root), calib_images=100, max_accuracy_drop=5.0, target="cpu"
        ),
    )
    return out, root


def test_replay_of_a_grey_test_set_scores_exactly_what_eval_scores(grey_bundle):
    from edgecls.data import load_for_model
    from edgecls.evaluate import evaluate_classifier

    bundle, root = grey_bundle
    clf = Classifier.load(bundle, precision="int8")
    assert clf.bundle.input.channels == 1 and clf.bundle.manifest.dataset == "fashion-mnist"
    test = load_for_model("fashion-mnist", "test", root, clf.bundle.input, clf.bundle.preprocess)
    summary = run_replay(
        clf, CameraOptions(replay_test_set="fashion-mnist", data_dir=str(root), headless=True, frame_size="112x84")
    )  # short side 84 = 3 × 28: exact
    assert summary["replay"]["resampled"] is False and summary["labelled_frames"] == 200
    assert (
        summary["accuracy"]
        == evaluate_classifier(clf, test)["top1"]
        == clf.bundle.manifest.accuracy["test"]["files"]["model.int8.onnx"]["top1"]
    )


def test_a_colour_frame_and_its_grey_version_get_the_same_answer(grey_bundle):
    bundle, _ = grey_bundle
    clf = Classifier.load(bundle, precision="fp32")
    rng = np.random.default_rng(0)  # a 28×28 colour scene enlarged 3×: the area reduction returns it exactly, so the
    scene = cv2.resize(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8), (84, 84), interpolation=cv2.INTER_NEAREST)
    frame = cv2.copyMakeBorder(
        scene, 0, 0, 14, 14, cv2.BORDER_CONSTANT
    )  # order of reduction and conversion cannot matter
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(clf.predict(frame).logits, clf.predict(grey).logits)
    assert np.array_equal(clf.predict(frame[..., ::-1].copy(), color="rgb").logits, clf.predict(grey).logits)
    assert not np.array_equal(
        clf.predict(frame[..., ::-1].copy()).logits, clf.predict(grey).logits
    )  # the order matters


def test_replay_picks_a_frame_size_the_grey_images_fit_exactly(grey_bundle, capsys):
    """28-pixel images do not divide 480: the default replays at 635×476 (crop 476 = 17 × 28), exact; an explicit
    640×480 is resampled, and the summary says which size would have been exact."""
    bundle, root = grey_bundle
    clf = Classifier.load(bundle, precision="int8")
    auto = run_replay(clf, CameraOptions(replay_test_set="fashion-mnist", data_dir=str(root), headless=True))
    assert auto["replay"]["frame_size"] == "635x476" and auto["replay"]["resampled"] is False
    assert auto["accuracy"] == clf.bundle.manifest.accuracy["test"]["files"]["model.int8.onnx"]["top1"]
    asked = run_replay(
        clf, CameraOptions(replay_test_set="fashion-mnist", data_dir=str(root), headless=True, frame_size="640x480")
    )
    assert asked["replay"]["resampled"] is True and asked["replay"]["exact_frame_size"] == "635x476"
    assert "--frame-size 635x476 or auto would" in " ".join(capsys.readouterr().err.split())
