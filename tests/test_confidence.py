"""Confidence that means what it says and "unknown" for what the model never saw: the numbers (checked against
brute force), what export records, and what the runtime and eval do with it."""

import json
import shutil

import numpy as np
import pytest

from edgecls import confidence
from edgecls.bundle import MANIFEST, Bundle
from edgecls.manifest import seal
from edgecls.runtime import Classifier


def _overconfident(n=4000, k=10, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += 2.0
    return 3.0 * logits, labels


def test_the_temperature_is_the_nll_minimum_and_lowers_the_calibration_error():
    logits, labels = _overconfident()
    fitted = confidence.fit_temperature(logits, labels)
    grid = np.linspace(0.3, 10, 4000)  # inside the search's bounds
    best = grid[np.argmin([confidence.nll(logits, labels, t) for t in grid])]
    assert fitted == pytest.approx(best, rel=2e-3)
    record = confidence.fit(logits, labels)
    assert record["ece_after"] < 0.03 < 0.08 < record["ece_before"]
    assert confidence.softmax(logits, fitted).argmax(1).tolist() == logits.argmax(1).tolist()  # top-1 unchanged


def test_top_label_platt_scaling_fits_the_logistic_regression_and_keeps_the_top_1():
    """The two parameters are the maximum likelihood of "top-1 right" given its log-odds (checked against a grid),
    and the calibrated top-1 probability never falls below a runner-up's."""
    logits, labels = _overconfident(seed=2)
    logits[:, 0] += 1.5  # a class the model over-favours: miscalibration no single temperature removes
    t = confidence.fit_temperature(logits, labels)
    a, b = confidence.fit_platt(logits, labels, t)
    probs = confidence.softmax(logits, t)
    z = np.log(probs.max(1) / (1 - probs.max(1)))
    right = probs.argmax(1) == labels

    def nll(a_, b_):
        q = 1 / (1 + np.exp(-(a_ * z + b_)))
        return -np.mean(np.where(right, np.log(q), np.log(1 - q)))

    assert nll(a, b) <= min(nll(a + da, b + db) for da in (-0.02, 0, 0.02) for db in (-0.02, 0, 0.02)) + 1e-12
    out = confidence.calibrated(logits, t, (a, b))
    rows = np.arange(len(out))
    assert np.allclose(out.sum(1), 1, atol=1e-5)
    assert (out[rows, logits.argmax(1)] >= np.sort(out, axis=1)[:, -2] - 1e-6).all()


def test_the_calibration_error_is_the_weighted_gap_per_bin():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    labels = np.array([0, 1, 0, 0])  # bin 0.9–0.97: accuracy 0.5 at 0.95; bin 0.53–0.6: accuracy 1 at 0.55
    assert confidence.reliability(probs, labels)["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)


def test_auroc_and_fpr_are_the_pairwise_and_quantile_definitions_ties_included():
    rng = np.random.default_rng(1)
    known, unknown = np.round(rng.normal(1, 1, 700), 1), np.round(rng.normal(0, 1, 500), 1)
    pairs = np.mean(known[:, None] > unknown[None, :]) + 0.5 * np.mean(known[:, None] == unknown[None, :])
    assert confidence.auroc(known, unknown) == pytest.approx(pairs, abs=1e-12)
    threshold = np.quantile(known, 0.05)
    assert confidence.fpr_at_tpr(known, unknown) == pytest.approx(np.mean(unknown >= threshold))


def test_export_records_each_graph_s_temperature_and_threshold_fitted_on_validation(bundle_dir):
    record = Bundle.open(bundle_dir).manifest.confidence
    assert record["retention"] == confidence.RETENTION
    files = Bundle.open(bundle_dir).manifest.raw["files"]
    onnx = {name for name, entry in files.items() if entry["format"] == "onnx"}
    assert set(record["files"]) == onnx
    for fitted in record["files"].values():
        assert 0.25 <= fitted["temperature"] <= 20 and 0 < fitted["unknown_below"] <= 1
        assert fitted["ece_after"] <= fitted["ece_before"] + 1e-9  # the NLL minimum, measured on the same split


def _with_confidence(bundle_dir, tmp_path, temperature, unknown_below):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    files = {
        name: {"temperature": temperature, "platt": [1.3, -0.2], "unknown_below": unknown_below}
        for name in manifest["files"]
    }
    manifest["confidence"] = {**manifest.get("confidence", {}), "files": files}
    (copy / MANIFEST).write_text(json.dumps(seal({k: v for k, v in manifest.items() if k != "digest"})))
    return copy


def test_the_runtime_reports_the_calibrated_confidence_and_unknown_below_the_threshold(bundle_dir, tmp_path):
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8) for i in range(8)]
    with Classifier.load(_with_confidence(bundle_dir, tmp_path, 2.5, 0.6), precision="fp32") as clf:
        predictions = clf.predict_batch(frames)
    for pred in predictions:
        probs = confidence.calibrated(pred.logits[None], 2.5, (1.3, -0.2))[0]
        assert pred.index == int(pred.logits.argmax())
        assert pred.confidence == pytest.approx(probs[pred.index], rel=1e-6)
        assert pred.unknown == (pred.confidence < 0.6)
    assert {p.unknown for p in predictions} <= {True, False}


def test_a_bundle_without_a_confidence_record_answers_as_before(bundle_dir, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest.pop("confidence", None)
    (copy / MANIFEST).write_text(json.dumps(seal({k: v for k, v in manifest.items() if k != "digest"})))
    frame = np.zeros((32, 32, 3), np.uint8)
    with Classifier.load(copy, precision="fp32") as clf:
        pred = clf.predict(frame)
    assert pred.confidence == pytest.approx(confidence.softmax(pred.logits[None])[0].max(), rel=1e-6)
    assert pred.unknown is False


def test_eval_reports_the_calibration_error_and_how_unknown_separates_another_dataset(bundle_dir, cifar_root, tmp_path):
    from edgecls.data import load_for_model
    from edgecls.evaluate import evaluate_classifier

    with Classifier.load(bundle_dir, precision="fp32") as clf:
        test = load_for_model("cifar10", "test", str(cifar_root), clf.bundle.input, clf.bundle.preprocess)
        noise = test.take(np.arange(len(test)))
        noise = type(noise)(
            "noise",
            np.random.default_rng(0).integers(0, 256, noise.images.shape, np.uint8),
            noise.labels,
            noise.classes,
        )
        report = evaluate_classifier(clf, test, out_json=tmp_path / "r.json", ood=noise)
    assert report["confidence"]["temperature"] == clf.temperature
    assert 0 <= report["confidence"]["ece"] <= 1
    assert set(report["ood"]["scores"]) == {*confidence.SCORES, clf.unknown_score} and "fpr_at_95_tpr" in report["ood"]
    assert 0 <= report["ood"]["auroc"] <= 1 and "unknown_called_unknown" in report["ood"]
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["confidence"]["ece"] == report["confidence"]["ece"] and saved["ood"]["auroc"] == report["ood"]["auroc"]
