""" "Unknown" from the features: the distance (checked against the textbook formula), the blocks a graph exposes, what
export ships and records per graph, and the runtime, eval and the record agreeing on one score."""

import json

import numpy as np
import onnx
import pytest

from edgecls.bundle import Bundle
from edgecls.feature_distance import SHRINKAGE, FeatureDistance, known_score, standardizer
from edgecls.runtime import Classifier


def _blobs(n=600, seed=0):
    """Two blocks (3 and 5 channels) of three classes with correlated, unequal spreads."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    mixing = rng.normal(size=(8, 8))
    features = rng.normal(size=(n, 8)) @ mixing + 4 * np.eye(8)[labels % 8] @ mixing
    return features.astype(np.float32), labels


def test_the_distance_is_the_mahalanobis_distance_to_the_nearest_class_mean():
    """Against Lee et al.'s formula written out: (f − μ_c)ᵀ Σ⁻¹ (f − μ_c), minimized over classes, Σ the shrunk
    covariance the classes share; within float32 storage's rounding (relative 1e-4)."""
    features, labels = _blobs()
    distance = FeatureDistance.fit(features, labels, (3, 5))
    probe = _blobs(50, seed=1)[0]
    for block, (start, stop) in enumerate(((0, 3), (3, 8))):
        x, f = features[:, start:stop].astype(np.float64), probe[:, start:stop].astype(np.float64)
        means = np.stack([x[labels == c].mean(0) for c in range(3)])
        centred = x - means[labels]
        sigma = centred.T @ centred / len(x)
        sigma += SHRINKAGE * np.trace(sigma) / len(sigma) * np.eye(len(sigma))
        precision = np.linalg.inv(sigma)
        expected = np.min([np.einsum("ij,jk,ik->i", f - m, precision, f - m) for m in means], axis=0)
        assert distance.distances(probe)[:, block] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_a_wide_block_is_measured_in_its_principal_directions(monkeypatch):
    """Above `DIRECTIONS` channels, the distance is the Mahalanobis distance within the directions of most variance:
    Σ over the kept eigenpairs (λ, v) of ((f − μ_c)·v)² / λ."""
    from edgecls import feature_distance

    monkeypatch.setattr(feature_distance, "DIRECTIONS", 2)
    features, labels = _blobs()
    distance = FeatureDistance.fit(features, labels, (3, 5))
    assert distance.whiten[1].shape == (5, 2)
    x, f = features[:, 3:].astype(np.float64), _blobs(50, seed=1)[0][:, 3:].astype(np.float64)
    means = np.stack([x[labels == c].mean(0) for c in range(3)])
    centred = x - means[labels]
    sigma = centred.T @ centred / len(x)
    values, vectors = np.linalg.eigh(sigma + SHRINKAGE * np.trace(sigma) / 5 * np.eye(5))
    projected = [((f - m) @ vectors[:, -2:]) ** 2 / values[-2:] for m in means]
    expected = np.min([p.sum(1) for p in projected], axis=0)
    assert distance.distances(_blobs(50, seed=1)[0])[:, 1] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_the_stored_distance_reads_back_as_the_same_numbers_and_standardizing_centres_each_block():
    features, labels = _blobs()
    distance = FeatureDistance.fit(features, labels, (3, 5))
    again = FeatureDistance.from_bytes(distance.to_bytes())
    assert np.array_equal(again.distances(features), distance.distances(features))
    d = distance.distances(features)
    scale = standardizer(d)
    assert known_score(d, scale).mean() == pytest.approx(0, abs=1e-9)
    assert known_score(d[:1] + np.array(scale["std"]), scale)[0] == pytest.approx(known_score(d[:1], scale)[0] - 2)


def test_the_exposed_blocks_are_the_trunk_s_stages():
    import torch
    from torch import nn

    from edgecls.export.feature_blocks import WithFeatures, feature_blocks
    from edgecls.zoo import create_model

    model = create_model("mobilenet_mod")
    blocks = feature_blocks(model, 3, 32)
    wrapped = WithFeatures(model, blocks).eval()
    with torch.no_grad():
        logits, features = wrapped(torch.zeros(2, 3, 32, 32))
    assert blocks == list(model.features) and features.shape == (2, sum(wrapped.widths))
    assert wrapped.widths == [32, 16, 24, 24, 32, 96, 96, 160, 160, 320, 1280]
    assert torch.equal(logits, model(torch.zeros(2, 3, 32, 32)))
    vgg_pools = feature_blocks(create_model("vgg16"), 3, 32)
    assert len(vgg_pools) == 5 and all(isinstance(b, nn.MaxPool2d) for b in vgg_pools)
    assert feature_blocks(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)), 3, 32) == []


def test_export_ships_the_distance_and_each_graph_s_threshold_and_keeps_the_features_in_float(bundle_dir):
    bundle = Bundle.open(bundle_dir)
    manifest = bundle.manifest
    assert manifest.output["features"]["file"] == "features.npz"
    distance = FeatureDistance.from_bytes(bundle.read_verified(bundle.find("feature-distance", "")))
    assert list(distance.widths) == manifest.output["features"]["blocks"]
    graphs = [e.name for e in bundle.files() if e.format == "onnx"]
    assert set(manifest.confidence["files"]) == set(graphs) and len(graphs) >= 3
    for name in graphs:
        record = manifest.confidence["files"][name]["features"]
        assert len(record["standardize"]["mean"]) == len(distance.widths)
        assert 0 <= record["test_called_unknown"] <= 0.5
        graph = onnx.load(str(bundle_dir / name)).graph
        assert [o.name for o in graph.output] == ["logits", "features"]
        producers = {out: node for node in graph.node for out in node.output}
        concat = producers[graph.output[1].name]
        concat = producers[concat.input[0]] if concat.op_type == "Cast" else concat
        assert concat.op_type == "Concat"
        feeding = [producers.get(i) for i in concat.input]
        assert all(node is not None and node.op_type != "DequantizeLinear" for node in feeding), name
    assert "model.int8.onnx" in graphs


def test_the_runtime_eval_and_the_record_call_the_same_images_unknown(bundle_dir, cifar_root):
    """The Classifier's `unknown` is the feature distance above the record's threshold, recomputed here from the
    graph's own `features` output; eval's share of test images called unknown equals the one export recorded."""
    import onnxruntime as ort

    from edgecls.data import load_for_model
    from edgecls.evaluate import evaluate_classifier

    with Classifier.load(bundle_dir, precision="int8") as clf:
        assert clf.unknown_score == "feature_distance"
        test = load_for_model("cifar10", "test", str(cifar_root), clf.bundle.input, clf.bundle.preprocess)
        record = clf.bundle.manifest.confidence["files"][clf.info.file]["features"]
        frames = list(test.images[:40, :, :, ::-1])  # BGR, as a camera gives them
        predictions = clf.predict_batch(frames)
        session = ort.InferenceSession(str(bundle_dir / clf.info.file), providers=["CPUExecutionProvider"])
        features = session.run(["features"], {"input": clf.preprocess_batch(frames)})[0]
        report = evaluate_classifier(clf, test, ood=test.take(np.arange(100)))
    by_hand = known_score(clf.distance.distances(features), record["standardize"]) < record["unknown_below"]
    assert [p.unknown for p in predictions] == by_hand.tolist()
    assert report["ood"]["score"] == "feature_distance"
    assert report["ood"]["auroc"] == report["ood"]["scores"]["feature_distance"]["auroc"]
    assert report["ood"]["known_called_unknown"] == pytest.approx(record["test_called_unknown"], abs=1.5 / len(test))


def test_a_bundle_whose_record_names_no_features_says_unknown_by_the_softmax(bundle_dir, tmp_path):
    import shutil

    from edgecls.bundle import MANIFEST
    from edgecls.manifest import seal

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    for record in manifest["confidence"]["files"].values():
        record.pop("features")
    (copy / MANIFEST).write_text(json.dumps(seal({k: v for k, v in manifest.items() if k != "digest"})))
    with Classifier.load(copy, precision="fp32") as clf:
        assert clf.unknown_score == "max_softmax" and clf.distance is None
