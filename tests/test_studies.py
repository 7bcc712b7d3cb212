"""Every study script in tools/ runs end to end in --quick mode on synthetic data in the official formats."""

import importlib.util
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).parent.parent / "tools"


def _load(name):
    sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from synthetic import write_cifar10, write_idx

    root = tmp_path_factory.mktemp("studydata")
    write_cifar10(root, per_batch=120, test=200)
    write_idx(root, "fashion-mnist")
    return root


def _run(name, data_root, tmp_path, *extra):
    out = tmp_path / name
    rows = _load(name).main(["--quick", "--data-dir", str(data_root), "--out", str(out), *extra])
    return rows, out


def test_optimizer_grid(data_root, tmp_path):
    """Two points of the grid (each is a training run); the full grid is the published study's Table 1."""
    study = _load("study_optimizers")
    assert (study.OPTIMIZERS, study.LRS) == (("sgd", "adam", "adadelta"), (0.1, 0.01, 0.001))
    rows, out = _run(
        "study_optimizers", data_root, tmp_path, "--model", "lenet5", "--optimizers", "sgd,adam", "--lrs", "0.01"
    )
    assert [(r["optimizer"], r["lr"], r["published_top1"]) for r in rows] == [
        ("sgd", 0.01, 0.8327),
        ("adam", 0.01, 0.8207),
    ]
    assert (out / "optimizers.json").exists() and (out / "optimizers.md").exists() and (out / "optimizers.png").exists()


def test_transfer_learning_with_synthetic_cifar100(data_root, tmp_path):
    rows, out = _run("study_transfer", data_root, tmp_path, "--model", "lenet5", "--unfrozen", "2")
    assert [r["setting"] for r in rows] == ["frozen backbone (head only)", "last 2 blocks unfrozen", "from scratch"]
    assert "synthetic" in (out / "transfer.md").read_text()


def test_imbalance_with_cross_validation(data_root, tmp_path):
    rows, out = _run("study_imbalance", data_root, tmp_path, "--model", "lenet5", "--folds", "2", "--lrs", "0.01")
    assert [r["loss"] for r in rows] == ["plain", "class-weighted"]
    assert all(len(r["worst5"].split(", ")) == 5 for r in rows)
    assert (out / "imbalance-cv.md").exists() and (out / "imbalance-plain.confusion.png").exists()


def test_classical_baselines(data_root, tmp_path):
    rows, out = _run("study_baselines", data_root, tmp_path)
    assert len(rows) == 18 and all(0 <= r["top1"] <= 1 for r in rows)


def test_architectures_on_both_datasets(data_root, tmp_path):
    rows, out = _run("study_architectures", data_root, tmp_path, "--models", "lenet5,baseline_cnn")
    assert {(r["dataset"], r["model"]) for r in rows} == {
        (d, m) for d in ("cifar10", "fashion-mnist") for m in ("lenet5", "baseline_cnn")
    }
    assert all(r["ort_cpu_p50_ms"] > 0 for r in rows)
    assert (out / "architectures-fashion-mnist.png").exists()


def test_exploration(data_root, tmp_path, trained_ckpt):
    _, out = _run("study_explore", data_root, tmp_path, "--checkpoint", str(trained_ckpt))
    for name in (
        "class-distribution.png",
        "samples.png",
        "pca.png",
        "tsne.png",
        "first-layer-kernels.png",
        "class-distribution.md",
    ):
        assert (out / name).stat().st_size > 0
