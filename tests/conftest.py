from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Real data (CIFAR-10 under $EDGECLS_DATA) is for the few tests that ask for `real_data`; every other test
# runs on synthetic data and must not pick the real set up by accident.
REAL_DATA = os.environ.pop("EDGECLS_DATA", None)

from synthetic import write_cifar10  # noqa: E402


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA or not (Path(REAL_DATA) / "cifar-10-batches-py").is_dir():
        pytest.skip("real CIFAR-10 not found: set EDGECLS_DATA to the folder holding cifar-10-batches-py")
    return Path(REAL_DATA)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    return write_cifar10(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def trained_ckpt(cifar_root, tmp_path_factory) -> Path:
    """lenet5 trained for a few epochs on the synthetic CIFAR-10: a real checkpoint in seconds."""
    from edgecls.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    summary = train(TrainConfig(model="lenet5", data_dir=str(cifar_root), out=str(out), epochs=8, batch_size=32,
                                optimizer="adam", lr=0.005, weight_decay=0.0, warmup_epochs=0.5), quiet=True)
    assert summary["test_top1"] > 0.8
    return out / "best.pt"


@pytest.fixture(scope="session")
def bundle_dir(trained_ckpt, cifar_root, tmp_path_factory) -> Path:
    from edgecls.export.pipeline import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("bundle") / "lenet5"
    export_bundle(str(trained_ckpt), ExportOptions(fp16=True, int8=True, out=str(out), data_dir=str(cifar_root),
                                                   calib_images=100, max_accuracy_drop=5.0))
    return out
