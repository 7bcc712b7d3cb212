"""Two CPU processes under torchrun (gloo) against one process on the same tiny dataset."""

import json
import os
import subprocess
import sys

import pytest

from edgecls.train.checkpoint import load_checkpoint


def _train(args, cifar_root, out, nproc, batch_size=32):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launcher, "-m", "edgecls", "train", "lenet5", "--data-dir", str(cifar_root), "--out", str(out), "--device", "cpu",
           "--batch-size", str(batch_size), "--optimizer", "adam", "--lr", "0.005", "--weight-decay", "0", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "history.json").read_text()), result.stderr


def test_two_process_ddp_matches_one_process_and_resumes(cifar_root, tmp_path):
    """2 ranks × 32 images see the same samples per step as 1 process × 64 (lenet5 has no BatchNorm, augmentation off),
    so averaged gradients make the same updates: losses and accuracies agree to float rounding."""
    one, _ = _train(["--epochs", "3", "--no-augment"], cifar_root, tmp_path / "one", 1, batch_size=64)
    two, log = _train(["--epochs", "3", "--no-augment"], cifar_root, tmp_path / "two", 2)
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
    resumed, log = _train(["--epochs", "4", "--resume", "--no-augment"], cifar_root, tmp_path / "two", 2)
    assert "resumed from" in log and len(resumed) == 4 and resumed[:3] == two
    assert load_checkpoint(tmp_path / "two" / "last.pt")["epoch"] == 4
