"""Which top-label map calibrates a bundle's graph: Platt scaling of the log-odds against beta calibration
(`edgecls.confidence.fit_beta`, tied or not), each after the temperature. The choice is five-fold cross-validation on
the validation split export fits on (fit on four fifths, measure the fifth); the test set is measured after, to
report only.

    python tools/study_calibration.py exports/mobilenet_mod --data-dir ../shared/datasets --precision int8

The logits come from the graph through ONNX Runtime and the runtime's preprocessing (`edgecls eval`'s path).
"""

from __future__ import annotations

import argparse

import numpy as np

from edgecls.confidence import calibrated, fit_beta, fit_temperature, reliability
from edgecls.data import load_for_model
from edgecls.data.split import train_val_split
from edgecls.evaluate import classifier_logits
from edgecls.runtime import Classifier

FOLDS = 5
MAPS = {"platt": True, "beta": False}  # name: fit_beta's `tied`


def cross_validated_ece(logits: np.ndarray, labels: np.ndarray, tied: bool) -> float:
    """The ECE of the held-out fifths put together, each calibrated by a fit on the other four."""
    folds = np.array_split(np.random.default_rng(0).permutation(len(labels)), FOLDS)
    probs = []
    order = np.concatenate(folds)
    for k, held in enumerate(folds):
        rest = np.concatenate([f for j, f in enumerate(folds) if j != k])
        t = fit_temperature(logits[rest], labels[rest])
        probs.append(calibrated(logits[held], t, fit_beta(logits[rest], labels[rest], t, tied)))
    return reliability(np.concatenate(probs), labels[order], logits[order].argmax(axis=1))["ece"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--precision", default="int8")
    args = parser.parse_args()

    with Classifier.load(args.bundle, backend="onnxruntime", precision=args.precision) as clf:
        bundle = clf.bundle
        dataset, split = bundle.manifest.raw["dataset"], bundle.manifest.raw["accuracy"]["validation"]["split"]
        train = load_for_model(dataset, "train", args.data_dir, bundle.input, bundle.preprocess)
        val = train_val_split(train, split)[1]
        test = load_for_model(dataset, "test", args.data_dir, bundle.input, bundle.preprocess)
        v, t = classifier_logits(clf, val), classifier_logits(clf, test)
    temperature = fit_temperature(v, val.labels)
    print(
        f"{clf.backend.source_graph}: {len(val.labels)} validation, {len(test.labels)} test images, T {temperature:.3f}"
    )
    for name, tied in MAPS.items():
        fitted = fit_beta(v, val.labels, temperature, tied)
        test_ece = reliability(calibrated(t, temperature, fitted), test.labels, t.argmax(axis=1))["ece"]
        print(
            f"{name:6s} (a, b, c) {', '.join(f'{x:.3f}' for x in fitted)}: validation ECE {FOLDS}-fold "
            f"{cross_validated_ece(v, val.labels, tied):.4f}; test ECE {test_ece:.4f} (reported only)"
        )


if __name__ == "__main__":
    main()
