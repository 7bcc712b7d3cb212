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
REAL_FASHION_MNIST = os.environ.pop("EDGECLS_FASHION_MNIST", None)  # the folder holding fashion-mnist/*-ubyte.gz

from synthetic import write_cifar10  # noqa: E402


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA or not (Path(REAL_DATA) / "cifar-10-batches-py").is_dir():
        pytest.skip("real CIFAR-10 not found: set EDGECLS_DATA to the folder holding cifar-10-batches-py")
    return Path(REAL_DATA)


@pytest.fixture(scope="session")
def real_fashion_mnist() -> Path:
    if not REAL_FASHION_MNIST or not (Path(REAL_FASHION_MNIST) / "fashion-mnist").is_dir():
        pytest.skip(
            "real Fashion-MNIST not found: apt-get install dataset-fashion-mnist, then "
            "EDGECLS_FASHION_MNIST=/usr/share/datasets"
        )
    return Path(REAL_FASHION_MNIST)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    return write_cifar10(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def trained_ckpt(cifar_root, tmp_path_factory) -> Path:
    """lenet5 trained for a few epochs on the synthetic CIFAR-10: a real checkpoint in seconds."""
    from edgecls.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    summary = train(
        TrainConfig(
            model="lenet5",
            data_dir=str(cifar_root),
            out=str(out),
            epochs=8,
            batch_size=32,
            optimizer="adam",
            lr=0.005,
            weight_decay=0.0,
            warmup_epochs=0.5,
        ),
        quiet=True,
    )
    assert summary["test_top1"] > 0.8
    return out / "best.pt"


@pytest.fixture(scope="session")
def bundle_dir(trained_ckpt, cifar_root, tmp_path_factory) -> Path:
    from edgecls.export.pipeline import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("bundle") / "lenet5"
    export_bundle(
        str(trained_ckpt),
        ExportOptions(
            fp16=True, int8=True, out=str(out), data_dir=str(cifar_root), calib_images=100, max_accuracy_drop=5.0
        ),
    )
    return out


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def plain_cifar(root: Path, split: str):
    """CIFAR-10 batches read with pickle alone, as a user's own training script reads them: uint8 N×32×32×3 RGB."""
    import pickle

    import numpy as np

    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    batches = [pickle.loads((root / "cifar-10-batches-py" / n).read_bytes(), encoding="bytes") for n in names]
    images = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.concatenate([b[b"labels"] for b in batches])


def plain_normalize(images):
    """torchvision's ToTensor + Normalize(ImageNet): pixels to 0–1, then ImageNet mean/std, NCHW."""
    import torch

    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() / 255.0
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="session")
def foreign(cifar_root, tmp_path_factory) -> dict:
    """A model edgecls did not write, trained with plain PyTorch (0–1 pixels, ImageNet mean/std), saved as a
    DataParallel run saves it ({"state_dict": {"module.…"}, "epoch"}), and exported to ONNX at a fixed batch of 1
    (opset 13, input named 'input.1'), once as a graph that runs batches and once as one that bakes in the batch."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent / "foreign"))
    from tiny_net import BatchOneNet, TinyNet

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("foreign")
    images, labels = plain_cifar(cifar_root, "train")
    x, y = plain_normalize(images), torch.from_numpy(labels).long()
    model = TinyNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(6):
        for i in torch.randperm(len(x)).split(50):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            optimizer.step()
    model.eval()
    wrapped = torch.nn.DataParallel(model)
    weights = out / "run" / "best.pth"
    weights.parent.mkdir()
    torch.save({"state_dict": wrapped.state_dict(), "epoch": 6, "best_acc": 0.9}, weights)

    test_images, test_labels = plain_cifar(cifar_root, "test")
    with torch.no_grad():
        logits = model(plain_normalize(test_images)).numpy()
    onnx_files = {}
    for name, net in (("tiny.onnx", model), ("batch_one.onnx", BatchOneNet())):
        if net is not model:
            net.load_state_dict(model.state_dict())
            net.eval()
        onnx_files[name] = out / name
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, 32, 32),),
            str(out / name),
            dynamo=False,
            opset_version=13,
            input_names=["input.1"],
            output_names=["output"],
        )
    return {
        "module": f"{Path(__file__).parent / 'foreign' / 'tiny_net.py'}:TinyNet",
        "weights": weights,
        "logits": logits,
        "top1": float((logits.argmax(1) == test_labels).mean()),
        "onnx": onnx_files["tiny.onnx"],
        "batch_one_onnx": onnx_files["batch_one.onnx"],
        "root": out,
    }


def foreign_options(**overrides):
    from edgecls.export.sources import ForeignOptions

    return ForeignOptions(**{"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "dataset": "cifar10", **overrides})


@pytest.fixture(scope="session")
def foreign_bundle(foreign, cifar_root, tmp_path_factory) -> Path:
    """The user's module exported with its weights: FP16 and both INT8 graphs behind the gate."""
    from edgecls.export.pipeline import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("foreign_bundle") / "tiny"
    export_bundle(
        foreign["module"],
        ExportOptions(
            fp16=True,
            int8=True,
            out=str(out),
            data_dir=str(cifar_root),
            calib_images=100,
            foreign=foreign_options(weights=str(foreign["weights"]), size=32),
        ),
    )
    return out


@pytest.fixture(scope="session")
def foreign_onnx_bundle(foreign, cifar_root, tmp_path_factory) -> Path:
    from edgecls.export.pipeline import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("foreign_onnx_bundle") / "tiny_onnx"
    export_bundle(
        str(foreign["onnx"]),
        ExportOptions(
            fp16=True, int8=True, out=str(out), data_dir=str(cifar_root), calib_images=100, foreign=foreign_options()
        ),
    )
    return out
