import pickle

import numpy as np
import pytest
import torch

from edgecls.errors import CheckpointError, ConfigError, TrainingDivergedError
from edgecls.train import TrainConfig, train
from edgecls.train.checkpoint import load_checkpoint, model_from_checkpoint
from edgecls.train.loop import class_weights
from edgecls.train.optim import freeze_all_but_last


def _cfg(cifar_root, out, **kw):
    base = dict(
        model="lenet5", data_dir=str(cifar_root), out=str(out), epochs=2, batch_size=50, lr=0.05, warmup_epochs=0.0
    )
    return TrainConfig(**{**base, **kw})


def test_training_lowers_the_loss_and_writes_artifacts(cifar_root, tmp_path):
    summary = train(_cfg(cifar_root, tmp_path, epochs=4), quiet=True)
    history = summary["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for name in (
        "best.pt",
        "last.pt",
        "history.json",
        "curves.png",
        "test_report.json",
        "test_report.confusion.png",
        "test_report.examples.png",
        "summary.json",
    ):
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
    summary = train(
        _cfg(cifar_root, tmp_path, epochs=1, init_from=str(trained_ckpt), trainable_blocks=2), data, data, quiet=True
    )
    ckpt = load_checkpoint(summary["checkpoint"])
    assert ckpt["model"]["args"]["num_classes"] == 3
    old = load_checkpoint(trained_ckpt)["state_dict"]
    assert torch.equal(ckpt["state_dict"]["features.0.weight"], old["features.0.weight"])  # frozen


def test_class_weights_are_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1]), 3).numpy()
    assert w[2] == 0 and w[1] == pytest.approx(3 * w[0])


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"optimizer": "sgdd"}, "did you mean 'sgd'"),
        ({"epochs": 0}, "epochs"),
        ({"trainable_blocks": 2}, "init_from"),
        ({"lr": float("nan")}, "lr must be a finite"),
        ({"momentum": float("inf")}, "momentum must be a finite"),
        ({"subset": 0}, "subset"),
    ],
)
def test_config_validation(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        TrainConfig(model="lenet5", **kw)


def test_fast_recipe_fills_defaults_but_explicit_options_win(cifar_root, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import edgecls.train as train_pkg
    from edgecls import cli

    captured = {}
    monkeypatch.setattr(train_pkg, "train", lambda cfg: captured.setdefault("cfg", cfg))
    result = CliRunner().invoke(
        cli.app,
        [
            "train",
            "whitened_vgg",
            "--recipe",
            "fast",
            "--epochs",
            "3",
            "--no-lookahead",
            "--data-dir",
            str(cifar_root),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    cfg = captured["cfg"]
    assert (cfg.recipe, cfg.batch_size, cfg.lr, cfg.schedule, cfg.label_smoothing) == ("fast", 1024, 1.5, "linear", 0.2)
    assert cfg.whiten_init and cfg.alternating_flip and cfg.pad_mode == "reflect" and cfg.crop_padding == 2
    assert cfg.epochs == 3 and not cfg.lookahead  # given on the command line: the recipe does not override them


def test_fast_recipe_trains_whitened_vgg_and_records_every_part(cifar_root, tmp_path):
    from edgecls.train.recipes import RECIPES

    settings = {
        **RECIPES["fast"],
        "epochs": 2,
        "batch_size": 64,
        "micro_batch_size": 32,
        "lr": 0.2,
        "warmup_epochs": 0.5,
    }
    summary = train(
        _cfg(
            cifar_root, tmp_path, model="whitened_vgg", model_kwargs={"widths": [16, 32, 32]}, recipe="fast", **settings
        ),
        quiet=True,
    )
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


@pytest.mark.parametrize(
    "avx512_bf16,amx,expected", [(True, False, torch.bfloat16), (False, True, torch.bfloat16), (False, False, None)]
)
def test_cpu_training_computes_in_bf16_only_where_the_cpu_has_bf16_instructions(
    monkeypatch, avx512_bf16, amx, expected
):
    from edgecls.train.loop import autocast_dtype

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert autocast_dtype(True, torch.device("cpu")) is expected
    assert autocast_dtype(False, torch.device("cpu")) is None


def test_validation_scores_in_fp32_while_training_computes_in_bf16():
    """Checkpoints are chosen on validation figures of the FP32 model the export sees, not of bf16 arithmetic."""
    from edgecls.train import loop

    torch.manual_seed(0)
    model = loop.create_model("lenet5")
    x, y = torch.randn(64, 3, 32, 32), torch.arange(64) % 10
    run = loop._Run.__new__(loop._Run)
    run.net = run.model = model
    run.device = torch.device("cpu")
    run.dist = type("D", (), {"all_sum": staticmethod(lambda values, device: values)})()
    run.val_loader = type("L", (), {"epoch": staticmethod(lambda: [(x, y)])})()
    run.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    with torch.no_grad():
        fp32_loss = float(torch.nn.functional.cross_entropy(model.eval()(x), y))
    assert run.validate()["val_loss"] == pytest.approx(fp32_loss, rel=1e-6)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(format="1"), "format must be an integer"),
        (lambda c: c["model"].pop("args"), "model must be"),
        (lambda c: c["model"]["args"].update(wings=2), "cannot be built by this edgecls"),
        (lambda c: c["normalization"].pop("mean"), "normalization must hold mean and std"),
        (lambda c: c.update(classes="airplane"), "classes must be"),
    ],
)
def test_malformed_checkpoints_raise_checkpoint_errors(trained_ckpt, tmp_path, edit, message):
    from edgecls.train.checkpoint import save_checkpoint

    ckpt = load_checkpoint(trained_ckpt)
    edit(ckpt)
    save_checkpoint(tmp_path / "bad.pt", {k: v for k, v in ckpt.items() if k != "format"})
    if "format" in ckpt and not isinstance(ckpt["format"], int):
        torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=message):
        model_from_checkpoint(load_checkpoint(tmp_path / "bad.pt"))


@pytest.mark.parametrize("subset", [5, 9])
def test_a_subset_too_small_for_a_validation_split_is_refused(cifar_root, tmp_path, subset):
    with pytest.raises(ConfigError, match="at least 100 images"):
        train(_cfg(cifar_root, tmp_path, subset=subset), quiet=True)


def test_resume_without_a_last_checkpoint_is_an_error(cifar_root, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to continue"):
        train(_cfg(cifar_root, tmp_path, resume=True), quiet=True)


def test_resume_refuses_changed_options_unless_overridden(cifar_root, tmp_path):
    _train_epochs(_cfg(cifar_root, tmp_path, epochs=3), 1)
    with pytest.raises(ConfigError, match=r"epochs 3 → 5.*lr 0.05 → 0.1"):
        train(_cfg(cifar_root, tmp_path, epochs=5, lr=0.1, resume=True), quiet=True)
    summary = train(
        _cfg(cifar_root, tmp_path, epochs=3, resume=True, device="cpu"), quiet=True
    )  # device: free to change
    assert summary["epochs_run"] == 3
    summary = train(_cfg(cifar_root, tmp_path, epochs=4, resume=True, resume_override=True), quiet=True)
    assert summary["epochs_run"] == 4


def test_resuming_a_frozen_fine_tune_refreezes_before_loading_the_optimizer(cifar_root, trained_ckpt, tmp_path):
    cfg = _cfg(cifar_root, tmp_path, epochs=2, init_from=str(trained_ckpt), trainable_blocks=1)
    _train_epochs(cfg, 1)
    summary = train(
        _cfg(cifar_root, tmp_path, epochs=2, init_from=str(trained_ckpt), trainable_blocks=1, resume=True), quiet=True
    )
    assert summary["epochs_run"] == 2
    old, new = load_checkpoint(trained_ckpt)["state_dict"], load_checkpoint(tmp_path / "last.pt")["state_dict"]
    assert torch.equal(old["features.0.weight"], new["features.0.weight"])  # still frozen after the resume


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(cifar_root, tmp_path, monkeypatch):
    from edgecls.train import loop

    original = loop._Run.train_epoch

    def diverge_in_epoch_2(self, epoch, progress):
        stats = original(self, epoch, progress)
        return {**stats, "train_loss": float("nan")} if epoch == 2 else stats

    monkeypatch.setattr(loop._Run, "train_epoch", diverge_in_epoch_2)
    with pytest.raises(TrainingDivergedError, match=r"epoch 2: the loss became nan.*last.pt \(epoch 1\)"):
        train(_cfg(cifar_root, tmp_path, epochs=3), quiet=True)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1 and load_checkpoint(tmp_path / "best.pt")["epoch"] == 1


def test_auxiliary_classifiers_add_their_weighted_loss_and_report_the_main_logits():
    """GoogLeNet with aux_logits returns three sets of logits in training: the loss is the main one plus 0.3 of each
    auxiliary's, and what the loop scores (training accuracy) is the main logits."""
    from edgecls.train import loop

    run = loop._Run.__new__(loop._Run)
    torch.manual_seed(0)
    model = loop.create_model("googlenet", aux_logits=True)
    run.cfg, run.net, run.model = TrainConfig(model="googlenet", batch_size=4), model, model
    run.dist = type("D", (), {"enabled": False})()
    run.autocast = lambda: __import__("contextlib").nullcontext()
    run.scaler = torch.amp.GradScaler("cuda", enabled=False)
    run.criterion = torch.nn.CrossEntropyLoss()
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    torch.manual_seed(1)
    logits, loss = run._forward_backward(x, y)
    torch.manual_seed(1)  # the same dropout masks
    main, aux1, aux2 = model(x)
    expected = run.criterion(main, y) + 0.3 * (run.criterion(aux1, y) + run.criterion(aux2, y))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert torch.allclose(logits, main.detach(), atol=1e-6) and logits.shape == (4, 10)


def test_an_epoch_outside_a_terminal_logs_its_steps(cifar_root, tmp_path, capsys):
    """Under nohup or CI the progress bar draws nothing: the epoch logs its first step, then one line per
    LOG_EVERY_S and one at its end, so a long epoch is never silent."""
    from edgecls import console as console_module

    assert not console_module.console.is_terminal
    train(_cfg(cifar_root, tmp_path, epochs=1), quiet=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch 1/1: ")]
    assert len(lines) >= 2 and lines[0].startswith("epoch 1/1: 1/") and "left" in lines[0]
