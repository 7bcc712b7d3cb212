import numpy as np
import pytest

from edgecls.baselines import knn, nearest_centroid
from edgecls.data.imageset import ImageSet
from edgecls.errors import ConfigError
from edgecls.metrics import classification_report


def test_report_matches_hand_computed_values():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    scores = np.eye(3)[y_pred]
    r = classification_report(y_true, scores, ["a", "b", "c"])
    assert r["top1"] == pytest.approx(4 / 6)
    a, b, c = r["per_class"]
    assert a["precision"] == 1.0 and a["recall"] == pytest.approx(2 / 3)
    assert b["precision"] == pytest.approx(1 / 2) and b["recall"] == pytest.approx(1 / 2)
    assert c["precision"] == pytest.approx(1 / 2) and c["recall"] == 1.0
    assert a["f1"] == pytest.approx(0.8)
    # BCR of class b: sensitivity 1/2, specificity 3/4 (TN 3 of the 4 non-b samples)
    assert b["bcr"] == pytest.approx((0.5 + 0.75) / 2)
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["macro"]["recall"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert r["best"][0] == "a" and r["worst"][0] == "b"


def test_top5_counts_label_within_five_best():
    scores = np.array([[0.0, 1, 2, 3, 4, 5, 6], [6.0, 5, 4, 3, 2, 1, 0]])
    r = classification_report(np.array([2, 6]), scores, list("abcdefg"))
    assert r["top5"] == 0.5 and r["top1"] == 0.0


def _separable():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    images = (labels[:, None, None, None] * 80 + rng.integers(0, 20, (60, 4, 4, 1))).astype(np.uint8)
    return ImageSet("s", images, labels, ("x", "y", "z"))


@pytest.mark.parametrize("metric", ["l1", "l2", "cosine"])
def test_knn_and_centroid_baselines(metric):
    data = _separable()
    assert knn(data, data, 1, metric)["top1"] == 1.0
    assert nearest_centroid(data, data, metric, "minmax")["top1"] >= (0.6 if metric == "cosine" else 1.0)


def test_baseline_rejects_unknown_metric():
    with pytest.raises(ConfigError, match="metric"):
        knn(_separable(), _separable(), 1, "chebyshev")
