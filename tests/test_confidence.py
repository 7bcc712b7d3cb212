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


def test_top_label_beta_calibration_fits_the_logistic_regression_and_keeps_the_top_1():
    """The three parameters are the maximum likelihood of "top-1 right" given (ln p, −ln(1 − p)) of the top-1
    probability p (checked against a grid, up to the weak pull to the identity), and the calibrated top-1
    probability never falls below a runner-up's."""
    logits, labels = _overconfident(seed=2)
    logits[:, 0] += 1.5  # a class the model over-favours: miscalibration no single temperature removes
    t = confidence.fit_temperature(logits, labels)
    beta = confidence.fit_beta(logits, labels, t)
    p = np.clip(confidence.softmax(logits, t).max(1), 1e-7, 1 - 1e-7)
    right = confidence.softmax(logits, t).argmax(1) == labels

    def nll(w):
        q = 1 / (1 + np.exp(-(w[0] * np.log(p) - w[1] * np.log(1 - p) + w[2])))
        pull = 0.5 * np.sum((np.asarray(w) - confidence.IDENTITY) ** 2)
        return -np.sum(np.where(right, np.log(q), np.log(1 - q))) + pull

    steps = [(d, e, f) for d in (-0.02, 0, 0.02) for e in (-0.02, 0, 0.02) for f in (-0.02, 0, 0.02)]
    assert nll(beta) <= min(nll(np.add(beta, s)) for s in steps) + 1e-9
    assert beta[0] != pytest.approx(beta[1], abs=0.05)  # not Platt's a = b: the two ends bend differently here
    out = confidence.calibrated(logits, t, beta)
    rows = np.arange(len(out))
    assert np.allclose(out.sum(1), 1, atol=1e-5)
    assert (out[rows, logits.argmax(1)] >= np.sort(out, axis=1)[:, -2] - 1e-6).all()


def test_a_bundle_recording_platt_s_two_parameters_is_calibrated_as_it_was_exported():
    """Bundles exported before beta calibration record top-label Platt (a, b) of the log-odds: the runtime reads it
    as (a, a, b), which maps the top-1 probability exactly as Platt did."""
    logits, _ = _overconfident(n=200, seed=3)
    assert confidence.top_label_map({"platt": [1.3, -0.2]}) == (1.3, 1.3, -0.2)
    assert confidence.top_label_map({"beta": [0.1, 1.4, -1.2]}) == (0.1, 1.4, -1.2)
    assert confidence.top_label_map({}) == confidence.IDENTITY
    probs = confidence.softmax(logits, 2.0)
    p, runner_up = np.sort(probs, 1)[:, -1], np.sort(probs, 1)[:, -2]
    platt = 1 / (1 + np.exp(-(1.3 * np.log(p / (1 - p)) - 0.2)))
    out = confidence.calibrated(logits, 2.0, confidence.top_label_map({"platt": [1.3, -0.2]}))
    tie = runner_up / (1 - p + runner_up)  # where Platt would put a runner-up on top, the two tie instead
    assert np.allclose(out[np.arange(len(out)), logits.argmax(1)], np.maximum(platt, tie), atol=1e-9)
    assert (platt > tie).mean() > 0.5


def test_the_calibration_error_scores_the_class_the_runtime_names_where_calibration_leaves_a_tie():
    """A top-label map that would sink the top-1 below the runner-up leaves the two tied; the answer is still the
    logits' argmax, so its rightness is what eval and export measure, not the tied probabilities' argmax."""
    from edgecls.evaluate import confidence_report

    probs, labels = np.array([[0.25, 0.375, 0.375]]), np.array([2])
    assert confidence.reliability(probs, labels, np.array([2]))["ece"] == pytest.approx(0.625)
    assert confidence.reliability(probs, labels, probs.argmax(1))["ece"] == pytest.approx(0.375)  # names class 1
    logits, labels = _overconfident(n=2000, seed=4)
    sinking = (0.0, 0.0, -5.0)  # every top-1 mapped to 0.007: each row ends in a tie
    calibrated = confidence.calibrated(logits, 1.0, sinking)
    assert (calibrated.argmax(1) != logits.argmax(1)).any()
    expected = confidence.reliability(calibrated, labels, logits.argmax(1))["ece"]
    assert confidence_report(logits, labels, 1.0, sinking)["ece"] == expected
    assert expected != confidence.reliability(calibrated, labels, calibrated.argmax(1))["ece"]


def test_the_calibration_error_is_the_weighted_gap_per_bin():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    labels = np.array([0, 1, 0, 0])  # bin 0.9–0.97: accuracy 0.5 at 0.95; bin 0.53–0.6: accuracy 1 at 0.55
    assert confidence.reliability(probs, labels, probs.argmax(1))["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)


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
        probs = confidence.calibrated(pred.logits[None], 2.5, (1.3, 1.3, -0.2))[0]
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


def test_the_calibration_study_fits_both_maps_on_the_bundle_s_validation_split(bundle_dir, cifar_root, capsys):
    """tools/study_calibration.py on a bundle: Platt's map has a = b, beta's need not; each line gives the
    cross-validated validation ECE before the test set's."""
    import runpy
    import sys
    from pathlib import Path

    argv = sys.argv
    sys.argv = ["study_calibration.py", str(bundle_dir), "--data-dir", str(cifar_root), "--precision", "fp32"]
    try:
        runpy.run_path(str(Path(__file__).parents[1] / "tools" / "study_calibration.py"), run_name="__main__")
    finally:
        sys.argv = argv
    lines = capsys.readouterr().out.splitlines()
    platt = next(line for line in lines if line.startswith("platt"))
    a, b, _ = (float(v) for v in platt.split("(a, b, c) ")[1].split(":")[0].split(", "))
    assert a == b and "validation ECE 5-fold" in platt and "test ECE" in platt
    assert any(line.startswith("beta") for line in lines)
