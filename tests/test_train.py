import pickle

import numpy as np
import pytest
import torch

from edgecls.errors import CheckpointError, ConfigError
from edgecls.train import TrainConfig, train
from edgecls.train.checkpoint import load_checkpoint, model_from_checkpoint
from edgecls.train.loop import class_weights
from edgecls.train.optim import freeze_all_but_last


def _cfg(cifar_root, out, **kw):
    base = dict(model="lenet5", data_dir=str(cifar_root), out=str(out), epochs=2, batch_size=50, lr=0.05, warmup_epochs=0.0)
    return TrainConfig(**{**base, **kw})


def test_training_lowers_the_loss_and_writes_artifacts(cifar_root, tmp_path):
    summary = train(_cfg(cifar_root, tmp_path, epochs=4), quiet=True)
    history = summary["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for name in ("best.pt", "last.pt", "history.json", "curves.png", "test_report.json", "test_report.confusion.png",
                 "test_report.examples.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt["classes"][0] == "airplane" and ckpt["input"] == {"size": 32, "channels": 3, "color": "rgb"}
    assert "test_top1" in ckpt["metrics"]
    assert not list(tmp_path.glob("*.partial"))


def test_resume_after_interruption_matches_uninterrupted_run(cifar_root, tmp_path):
    full = train(_cfg(cifar_root, tmp_path / "full", epochs=3), quiet=True)
    # crash during epoch 2 of a 3-epoch schedule, then resume from last.pt (epoch 1)
    first = _cfg(cifar_root, tmp_path / "cut", epochs=3)
    _train_epochs(first, 1)
    resumed = train(_cfg(cifar_root, tmp_path / "cut", epochs=3, resume=True), quiet=True)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [h["train_loss"] for h in full["history"]] == [h["train_loss"] for h in resumed["history"]]


def _train_epochs(cfg, n):
    """Run the first `n` epochs of `cfg` and stop, as a crash would (last.pt holds epoch n)."""
    from edgecls.train import loop

    original = loop._Run.validate
    calls = {"n": 0}

    def validate_then_crash(self):
        if calls["n"] == n:
            raise KeyboardInterrupt
        calls["n"] += 1
        return original(self)

    loop._Run.validate = validate_then_crash
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, quiet=True)
    finally:
        loop._Run.validate = original


def test_checkpoints_refuse_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(pickle.dumps([1, 2])[:5])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")


def test_freeze_all_but_last_block_leaves_only_the_head(trained_ckpt):
    ckpt = load_checkpoint(trained_ckpt)
    model = model_from_checkpoint(ckpt)
    n = freeze_all_but_last(model, 1)
    assert n == sum(p.numel() for p in model.classifier.parameters())


def test_init_from_new_class_count(cifar_root, trained_ckpt, tmp_path):
    from synthetic import make_images

    from edgecls.data.imageset import ImageSet

    images, labels = make_images(120, num_classes=3, seed=5)
    data = ImageSet("three", images, labels, ("a", "b", "c"))
    summary = train(_cfg(cifar_root, tmp_path, epochs=1, init_from=str(trained_ckpt), trainable_blocks=2), data, data, quiet=True)
    ckpt = load_checkpoint(summary["checkpoint"])
    assert ckpt["model"]["args"]["num_classes"] == 3
    old = load_checkpoint(trained_ckpt)["state_dict"]
    assert torch.equal(ckpt["state_dict"]["features.0.weight"], old["features.0.weight"])  # frozen


def test_class_weights_are_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1]), 3).numpy()
    assert w[2] == 0 and w[1] == pytest.approx(3 * w[0])


@pytest.mark.parametrize(("kw", "msg"), [({"optimizer": "sgdd"}, "did you mean 'sgd'"), ({"epochs": 0}, "epochs"),
                                         ({"trainable_blocks": 2}, "init_from")])
def test_config_validation(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        TrainConfig(model="lenet5", **kw)
