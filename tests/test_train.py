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


def test_fast_recipe_fills_defaults_but_explicit_options_win(cifar_root, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import edgecls.train as train_pkg
    from edgecls import cli

    captured = {}
    monkeypatch.setattr(train_pkg, "train", lambda cfg: captured.setdefault("cfg", cfg))
    result = CliRunner().invoke(cli.app, ["train", "whitened_vgg", "--recipe", "fast", "--epochs", "3", "--no-lookahead",
                                          "--data-dir", str(cifar_root), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    cfg = captured["cfg"]
    assert (cfg.recipe, cfg.batch_size, cfg.lr, cfg.schedule, cfg.label_smoothing) == ("fast", 1024, 1.5, "linear", 0.2)
    assert cfg.whiten_init and cfg.alternating_flip and cfg.pad_mode == "reflect" and cfg.crop_padding == 2
    assert cfg.epochs == 3 and not cfg.lookahead  # given on the command line: the recipe does not override them


def test_fast_recipe_trains_whitened_vgg_and_records_every_part(cifar_root, tmp_path):
    from edgecls.train.recipes import RECIPES

    settings = {**RECIPES["fast"], "epochs": 2, "batch_size": 64, "micro_batch_size": 32, "lr": 0.2, "warmup_epochs": 0.5}
    summary = train(_cfg(cifar_root, tmp_path, model="whitened_vgg", model_kwargs={"widths": [16, 32, 32]}, recipe="fast",
                         **settings), quiet=True)
    assert summary["history"][-1]["train_loss"] < summary["history"][0]["train_loss"]
    assert summary["test_top1"] > 0.3
    recorded = summary["config"]
    assert all(recorded[k] == v for k, v in settings.items())
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert set(ckpt["lookahead"]) >= {"stem.weight", "head.weight"}
    # Lookahead's last step copies the slow weights into the model
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in ckpt["lookahead"].items())


def test_micro_batches_give_the_batch_gradient():
    from edgecls.train import loop

    cfg = TrainConfig(model="lenet5", batch_size=8, micro_batch_size=3, weight_decay=0.0)
    run = loop._Run.__new__(loop._Run)
    torch.manual_seed(0)
    model = loop.create_model("lenet5")
    run.cfg, run.net, run.model = cfg, model, model
    run.dist = type("D", (), {"enabled": False})()
    run.autocast = lambda: __import__("contextlib").nullcontext()
    run.scaler = torch.amp.GradScaler("cuda", enabled=False)
    run.criterion = torch.nn.CrossEntropyLoss()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    _, loss = run._forward_backward(x, y)
    micro = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    full = run.criterion(model(x), y)
    full.backward()
    assert float(loss) == pytest.approx(float(full.detach()), rel=1e-5)
    for a, p in zip(micro, model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-6)
