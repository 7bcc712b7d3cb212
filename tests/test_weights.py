"""Every shipped weights file matches its model card: hash, size, metadata, and it loads safely."""

from pathlib import Path

import pytest

from edgecls.fileio import sha256_file
from edgecls.train.checkpoint import load_checkpoint, model_from_checkpoint
from edgecls.zoo.pretrained import WEIGHTS_DIR, all_cards

CARDS = all_cards()
DATA_FILES = {
    "cifar10": {"data_batch_1", "test_batch"},
    "fashion-mnist": {"train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"},
}
VAL_SAMPLES = {"cifar10": 5_000, "fashion-mnist": 6_000}
REAL = {"cifar10": "real_data", "fashion-mnist": "real_fashion_mnist"}


def test_mobilenet_mod_and_lenet5_are_shipped():
    assert {"mobilenet_mod.cifar10", "lenet5.cifar10"} <= set(CARDS)


@pytest.mark.parametrize("key", sorted(CARDS))
def test_shipped_weights_match_their_card(key):
    card = CARDS[key]
    path = WEIGHTS_DIR / f"{key}.pt"
    assert path.stat().st_size == card.weights_bytes < 20 * 2**20  # docs/training_notes.md: the limit
    assert sha256_file(path) == card.weights_sha256
    assert set(card.data_sha256) >= DATA_FILES[card.dataset]
    ckpt = load_checkpoint(path)  # weights_only=True
    assert ckpt["model"]["name"] == card.model and len(ckpt["classes"]) == 10
    assert "optimizer" not in ckpt
    model = model_from_checkpoint(ckpt)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert abs(ckpt["metrics"]["val_acc"] - card.val_top1) < 1e-9


@pytest.mark.parametrize("key", sorted(CARDS))
def test_card_records_the_exported_graphs_and_int8_stays_within_half_a_point(key):
    export = CARDS[key].export
    top1 = export["top1"]
    assert {"model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8.trt.onnx"} <= set(top1)
    assert export["test_samples"] == 10_000 and "train" in export["calibration"]["dataset"]
    assert top1["model.onnx"] == pytest.approx(CARDS[key].test_top1, abs=0.002)
    for int8 in ("model.int8.onnx", "model.int8.trt.onnx"):
        assert top1["model.onnx"] - top1[int8] <= 0.005
    assert set(export["val_top1"]) == set(top1) and export["val_samples"] == VAL_SAMPLES[CARDS[key].dataset]


SLICE = 2000


@pytest.mark.parametrize("key", sorted(CARDS))
def test_shipped_weights_score_their_card_on_real_test_images(key, request, tmp_path):
    """Re-measured, not read back: the FP32 ONNX export of the shipped file on the first 2,000 real test images
    scores what it scored when the card was written (to two images), and lies within four binomial standard
    errors of the card's full-test-set figure."""
    from edgecls.export.pipeline import ExportOptions, export_bundle
    from edgecls.export.sources import ForeignOptions

    card = CARDS[key]
    real_data = request.getfixturevalue(REAL[card.dataset])
    manifest = export_bundle(
        card.model,
        ExportOptions(
            out=str(tmp_path / "b"),
            data_dir=str(real_data),
            eval_images=SLICE,
            foreign=ForeignOptions(dataset=card.dataset),
        ),
    )
    measured = manifest["accuracy"]["test"]["files"]["model.onnx"]["top1"]
    expected = card.test_top1
    assert manifest["accuracy"]["test"]["samples"] == SLICE == card.export["test_slice"]["images"]
    assert abs(measured - card.export["test_slice"]["model.onnx"]) <= 2 / SLICE
    assert abs(measured - expected) <= 4 * (expected * (1 - expected) / SLICE) ** 0.5


def test_a_card_s_deployed_figures_are_what_eval_prints(bundle_dir, cifar_root, tmp_path):
    """tools/ship_weights.py writes into the card what `edgecls eval BUNDLE --precision P --ood-dataset fashion-mnist
    --corruptions` reports, figure for figure (here on the synthetic bundle and datasets)."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    import ship_weights
    from synthetic import write_idx
    from typer.testing import CliRunner

    from edgecls.cli import app

    write_idx(tmp_path / "ood")
    deployed = ship_weights.deployed_figures(str(bundle_dir), "cifar10", str(cifar_root), str(tmp_path / "ood"))
    args = ["eval", str(bundle_dir), "--precision", "int8", "--backend", "onnxruntime", "--data-dir", str(cifar_root)]
    args += ["--ood-dataset", "fashion-mnist", "--ood-data-dir", str(tmp_path / "ood"), "--corruptions"]
    result = CliRunner().invoke(app, [*args, "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    card = deployed["files"]["model.int8.onnx"]
    assert set(deployed["files"]) == {"model.onnx", "model.fp16.onnx", "model.int8.onnx"}
    assert card["top1"] == report["top1"] and card["confidence.ece"] == report["confidence"]["ece"]
    assert card["ood.auroc"] == report["ood"]["auroc"] and card["ood.score"] == "feature_distance"
    assert card["test_called_unknown"] == report["ood"]["known_called_unknown"]
    assert card["corruptions.mean_top1"] == report["corruptions"]["mean_top1"]
    assert deployed["corruptions"]["images"] == report["corruptions"]["images"] == 200  # the whole synthetic test set


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_ship_weights_stops_a_training_beside_it_only_while_it_times_and_refuses_a_busy_machine(monkeypatch):
    """`--pause PID`: the training is stopped while the card's latency is measured and runs again after, even when
    the measurement is refused because other processes kept the machine busy."""
    import subprocess
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    import ship_weights

    training = subprocess.Popen(["sleep", "60"])
    seen, busy = [], 0.0

    def state() -> str:
        return Path(f"/proc/{training.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

    def bench(bundle, options):
        deadline = time.monotonic() + 2  # a signal is delivered asynchronously; the bench's warm-up outlasts that
        while state() != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(state())
        host = {"cpu": "c", "int8_dot_product": "none", "logical_cores": 2, "versions": {"onnxruntime": "1"}}
        return {"host": host, "frame_size": "640x480", "pace_ms": 33.0, "other_cores_busy_during": busy, "rows": []}

    monkeypatch.setattr(ship_weights, "run_bench", bench)
    try:
        assert ship_weights.measured_latency("b", None, (training.pid,))["other_cores_busy_during"] == 0.0
        busy = 1.2
        with pytest.raises(SystemExit, match="kept 1.2 of 2 cores busy"):
            ship_weights.measured_latency("b", None, (training.pid,))
        assert seen == ["T", "T"] and state() in "SR"
    finally:
        training.kill()
        training.wait()


def test_a_fine_tune_s_card_tells_every_stage_it_started_from(monkeypatch, tmp_path):
    """Weights fine-tuned from bundled weights through an intermediate run: the card lists the bundled weights' own
    recipe and the intermediate run, oldest first; a start that cannot be traced, or bundled weights that no longer
    match their card, stop the shipping."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    import ship_weights

    from edgecls.train.config import TrainConfig

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "m.cifar10.pt").write_bytes(b"base weights")
    base = {"command": "edgecls train m --epochs 220", "epochs_run": 220, "wall_time_s": 600.0}
    card = {**base, "augmentations": ["horizontal flip"], "weights_sha256": sha256_file(weights / "m.cifar10.pt")}
    (weights / "m.cifar10.json").write_text(json.dumps(card))
    monkeypatch.setattr(ship_weights, "WEIGHTS_DIR", weights)
    run = tmp_path / "runs" / "ft"
    run.mkdir(parents=True)
    config = TrainConfig(model="lenet5", augmix=True, init_from=str(weights / "m.cifar10.pt")).to_dict()
    (run / "summary.json").write_text(json.dumps({"command": "edgecls train m --augmix", "config": config}))
    (run / "history.json").write_text(json.dumps([{"epoch_s": 10.0}, {"epoch_s": 12.5}]))

    first, second = ship_weights.earlier_stages(str(run / "best.pt"))
    assert first == {**base, "augmentations": ["horizontal flip"]}
    assert second["command"] == "edgecls train m --augmix" and second["epochs_run"] == 2
    assert second["wall_time_s"] == 22.5 and any("AugMix" in a for a in second["augmentations"])
    assert ship_weights.earlier_stages(None) == []
    with pytest.raises(SystemExit, match="neither a run's checkpoint"):
        ship_weights.earlier_stages(str(tmp_path / "elsewhere.pt"))
    (weights / "m.cifar10.pt").write_bytes(b"other weights")
    with pytest.raises(SystemExit, match="no longer matches its card"):
        ship_weights.earlier_stages(str(run / "best.pt"))
