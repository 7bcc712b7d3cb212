"""Two CPU processes under torchrun (gloo) against one process on the same tiny dataset."""

import json
import os
import subprocess
import sys

import pytest

from edgecls.train.checkpoint import load_checkpoint


def _train(args, cifar_root, out, nproc, batch_size=32, ok=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [
        *launcher,
        "-m",
        "edgecls",
        "train",
        "lenet5",
        "--data-dir",
        str(cifar_root),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--batch-size",
        str(batch_size),
        "--optimizer",
        "adam",
        "--lr",
        "0.005",
        "--weight-decay",
        "0",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if not ok:
        assert result.returncode != 0
        return None, result.stderr + result.stdout
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "history.json").read_text()), result.stderr


def test_two_process_ddp_matches_one_process_and_resumes(cifar_root, tmp_path):
    """2 ranks × 32 images see the same samples per step as 1 process × 64 (lenet5 has no BatchNorm, augmentation off),
    so averaged gradients make the same updates: losses and accuracies agree to FP32 rounding (bf16 autocast, on
    CPUs that have it, rounds differently in each split of the batch)."""
    one, _ = _train(["--epochs", "3", "--no-augment", "--no-amp"], cifar_root, tmp_path / "one", 1, batch_size=64)
    two, log = _train(["--epochs", "3", "--no-augment", "--no-amp"], cifar_root, tmp_path / "two", 2)
    assert "world size 2" in log and log.count("epoch   1 ") == 1  # only rank 0 logs
    assert [h["samples_seen"] for h in two] == [h["samples_seen"] for h in one] == [450] * 3
    for a, b in zip(one, two, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
        assert b["val_acc"] == a["val_acc"] and b["train_acc"] == a["train_acc"]
    assert two[-1]["train_loss"] < two[0]["train_loss"]
    assert two[-1]["val_acc"] > 0.5
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]
    assert not list((tmp_path / "two").glob("*.partial"))
    args = ["--epochs", "4", "--resume", "--no-augment", "--no-amp"]
    _, log = _train(args, cifar_root, tmp_path / "one", 1, batch_size=64, ok=False)
    assert "epochs 3 → 4" in log and "--resume-override" in log
    resumed, log = _train(
        ["--epochs", "4", "--resume", "--resume-override", "--no-augment", "--no-amp"], cifar_root, tmp_path / "two", 2
    )
    assert (
        "resumed from" in log
        and "changed options: epochs 3 → 4" in " ".join(log.split())
        and len(resumed) == 4
        and resumed[:3] == two
    )
    assert load_checkpoint(tmp_path / "two" / "last.pt")["epoch"] == 4


def test_validation_shards_count_every_image_once_while_training_shards_pad():
    import numpy as np
    from synthetic import make_images

    from edgecls.data.imageset import ImageSet
    from edgecls.data.loader import BatchLoader
    from edgecls.imaging import Normalization

    images, labels = make_images(5_002 // 41, seed=0)  # 122 images over 8 ranks: not a multiple
    data = ImageSet("v", images, labels, tuple("abcdefghij"))
    norm = Normalization.fit(images)

    def shards(pad):
        return [BatchLoader(data, 16, norm, rank=r, world_size=8, pad=pad)._indices(0) for r in range(8)]

    val = np.concatenate(shards(pad=False))
    assert len(val) == len(data) and np.array_equal(np.sort(val), np.arange(len(data)))
    assert len({len(s) for s in shards(pad=True)}) == 1 and sum(len(s) for s in shards(pad=True)) == 128


def test_ranks_draw_their_own_augmentation():
    import numpy as np
    import torch
    from synthetic import make_images

    from edgecls.data.imageset import ImageSet
    from edgecls.data.loader import BatchLoader, rank_seed
    from edgecls.data.transforms import Augment
    from edgecls.imaging import Normalization

    images, _ = make_images(1, seed=0)
    data = ImageSet("same", np.repeat(images, 64, axis=0), np.zeros(64, np.int64), tuple("abcdefghij"))
    norm = Normalization.fit(data.images)

    def batch(rank, epoch):
        return next(BatchLoader(data, 32, norm, Augment(4, True), rank=rank, world_size=8).epoch(epoch))[0]

    assert not torch.equal(batch(0, 1), batch(1, 1))  # the same images, augmented differently on each rank
    assert not torch.equal(batch(7, 1), batch(0, 2))  # and never the draws of another rank's other epoch
    assert rank_seed(1_000, 0) == 1_000  # a single process keeps its seeds: shipped runs reproduce
