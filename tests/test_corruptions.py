import json

import cv2
import numpy as np
import pytest
from synthetic import make_images, run_replay

from edgecls.camera.options import CameraOptions
from edgecls.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from edgecls.errors import ConfigError


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_keeps_the_images_form_grows_with_severity_and_repeats_exactly(name):
    noisy, _ = make_images(40, seed=3)
    rgb = np.stack([cv2.GaussianBlur(image, (0, 0), 1.5) for image in noisy])  # smooth, as photographs mostly are
    grey, _ = make_images(6, size=28, channels=1, seed=4)
    assert corrupt(grey, name, 5).shape == grey.shape
    changes = [np.abs(corrupt(rgb, name, s).astype(int) - rgb).mean() for s in SEVERITIES]
    assert changes[0] > 0 and changes[-1] > changes[0]  # severity 5 moves pixels further than severity 1
    once = corrupt(rgb, name, 3, seed=7)
    assert np.array_equal(once, corrupt(rgb, name, 3, seed=7)) and once.dtype == np.uint8
    assert np.array_equal(corrupt(rgb, name, 3)[:10], corrupt(rgb[:10], name, 3))  # eval's first N = replay's first N


def test_a_wrong_corruption_is_named_with_the_suite():
    images, _ = make_images(2)
    with pytest.raises(ConfigError, match="gaussian_noise"):
        corrupt(images, "fog", 3)
    with pytest.raises(ConfigError, match="1 to 5"):
        corrupt(images, "dark", 6)
    with pytest.raises(ConfigError, match="NAME:SEVERITY"):
        CameraOptions(replay_test_set="cifar10", corruption="dark")
    with pytest.raises(ConfigError, match="--replay-test-set"):
        CameraOptions(corruption="dark:3")


def test_eval_reports_the_suite_and_camera_replays_a_corrupted_set_to_the_same_figure(bundle_dir, cifar_root, tmp_path):
    from typer.testing import CliRunner

    from edgecls.cli import app
    from edgecls.runtime import Classifier

    out = tmp_path / "r.json"
    args = ["eval", str(bundle_dir), "--precision", "int8", "--data-dir", str(cifar_root), "--corruptions"]
    result = CliRunner().invoke(app, [*args, "--corruption-images", "120", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["corruptions"]
    assert report["images"] == 120 and set(report["by_corruption"]) == set(CORRUPTIONS)
    assert report["mean_top1"] == pytest.approx(np.mean([c["top1"] for c in report["by_corruption"].values()]))
    assert (tmp_path / "r.corruptions.png").stat().st_size > 10_000
    options = CameraOptions(
        replay_test_set="cifar10", data_dir=str(cifar_root), headless=True, corruption="contrast:4", max_frames=120
    )
    clf = Classifier.load(bundle_dir, backend="onnxruntime", precision="int8", device="cpu")
    summary = run_replay(clf, options)
    assert clf.info.precision == "int8" and summary["replay"]["corruption"] == "contrast:4"
    assert summary["accuracy"] == report["by_corruption"]["contrast"]["top1"][3]
    assert summary["accuracy"] != report["clean_top1"]  # the replay saw the corrupted pixels
