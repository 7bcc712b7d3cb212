"""Ship a training run's best checkpoint as bundled zoo weights, with its model card.

    python tools/ship_weights.py runs/mobilenet_mod --dataset cifar10 --data-dir ../shared/datasets \
        --command "edgecls train mobilenet_mod ..." --hardware "2-core CPU"
    python tools/ship_weights.py --refresh-export lenet5 --data-dir ../shared/datasets

Writes edgecls/zoo/weights/<model>.<dataset>.pt (FP32 state dict and the metadata the export needs; no
optimizer state) and <model>.<dataset>.json: the command, epochs, hardware, wall time, final validation
and test accuracy, the sha256 of every data file used and of the weights file itself. It then exports the
shipped file exactly as `edgecls export MODEL --fp16 --int8` would and records the test accuracy of every
deployable graph, so the card states what the FP16 and INT8 artifacts score, not only the PyTorch model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
from dataclasses import fields
from pathlib import Path

from edgecls.bench import busy_notes, run_bench
from edgecls.data.locate import data_root
from edgecls.export.pipeline import ExportOptions, export_bundle
from edgecls.export.sources import NO_SPLIT, ForeignOptions
from edgecls.fileio import atomic_write_json, sha256_file
from edgecls.jsonrecord import read_record
from edgecls.measure_options import BenchOptions, EvalOptions
from edgecls.train.checkpoint import describe_checkpoint, load_checkpoint, save_checkpoint
from edgecls.zoo.pretrained import WEIGHTS_DIR, ModelCard

DATA_FILES = {"cifar10": "cifar-10-batches-py", "fashion-mnist": "fashion-mnist"}


def write_card(key: str, card: dict) -> None:
    """Write the card once it reads back as a `ModelCard` (the format the package reads), atomically."""
    read_record(ModelCard, card, lambda problem: SystemExit(f"the card for {key} is malformed: {problem}"))
    atomic_write_json(WEIGHTS_DIR / f"{key}.json", card)


def ship(run: Path, dataset: str, data_dir: str | None, command: str, hardware: str) -> dict:
    ckpt = load_checkpoint(run / "best.pt")
    history = json.loads((run / "history.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    name = ckpt["model"]["name"]
    dst = WEIGHTS_DIR / f"{name}.{dataset}.pt"
    keep = ("model", "state_dict", "classes", "normalization", "input", "dataset", "metrics")
    split = describe_checkpoint(run / "best.pt", ckpt).split
    if split is None:
        raise SystemExit(f"{run / 'best.pt'}: {NO_SPLIT}")
    stages = earlier_stages(ckpt["config"].get("init_from"))  # before dst, perhaps where it started, is replaced
    save_checkpoint(dst, {**{k: ckpt[k] for k in keep}, "split": split})
    folder = data_root(data_dir) / DATA_FILES[dataset]
    return {
        "model": name,
        "dataset": dataset,
        "command": command,
        "hardware": hardware,
        "epochs_run": len(history),
        "best_epoch": ckpt["epoch"],
        "wall_time_s": round(sum(h["epoch_s"] for h in history), 1),
        "split": split,
        "val_top1": ckpt["metrics"]["val_acc"],
        "test_top1": summary["test_top1"],
        "test_top5": summary["test_top5"],
        "images_per_s": round(sum(h["images_per_s"] for h in history) / len(history), 1),
        "tta_top1": tta_accuracy(dst, dataset, data_dir, split),
        "augmentations": augmentations(ckpt["config"]),
        **({"earlier_stages": stages} if stages else {}),
        "training_log_tail": [
            f"epoch {h['epoch']}: train {h['train_acc']:.4f} val {h['val_acc']:.4f}" for h in history[-3:]
        ],
        "data_sha256": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()},
        "weights_sha256": sha256_file(dst),
        "weights_bytes": dst.stat().st_size,
    }


def earlier_stages(init_from: str | None) -> list[dict]:
    """The runs a fine-tune started from, oldest first, so its card tells the whole recipe: a run directory's
    summary gives its command, a bundled checkpoint its card (checked against the weights). Anything else cannot be
    traced, and weights whose making cannot be told are not shipped."""
    if not init_from:
        return []
    start = Path(init_from)
    card_path, summary_path = start.with_suffix(".json"), start.parent / "summary.json"
    if start.parent.resolve() == WEIGHTS_DIR.resolve() and card_path.is_file():
        card = json.loads(card_path.read_text())
        if sha256_file(start) != card["weights_sha256"]:
            raise SystemExit(f"{start} no longer matches its card: the fine-tune's start cannot be told")
        stage = {k: card[k] for k in ("command", "epochs_run", "wall_time_s")}
        return [*card.get("earlier_stages", []), {**stage, "augmentations": card.get("augmentations") or []}]
    if start.name in ("best.pt", "last.pt") and summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        history = json.loads((start.parent / "history.json").read_text())
        stage = {
            "command": summary["command"],
            "epochs_run": len(history),
            "wall_time_s": round(sum(h["epoch_s"] for h in history), 1),
            "augmentations": augmentations(summary["config"]),
        }
        return [*earlier_stages(summary["config"].get("init_from")), stage]
    raise SystemExit(
        f"the run started from {start}, which is neither a run's checkpoint (beside its summary.json) nor bundled "
        "weights with their card: ship from a run whose start can be told"
    )


def augmentations(config: dict) -> list[str]:
    """The run's augmentations in words: the card names them, so a robustness figure can be read against them."""
    from edgecls.data.transforms import Augment
    from edgecls.train.config import TrainConfig

    augment = Augment.from_config(TrainConfig.from_dict(config))
    return augment.names() if augment else []


def tta_accuracy(weights: Path, dataset: str, data_dir: str | None, split: dict) -> dict:
    """Validation and test top-1 with 6-view test-time augmentation (`edgecls eval --tta`): an evaluation aid only."""
    from edgecls.data import load_dataset
    from edgecls.data.split import train_val_split
    from edgecls.imaging import Normalization
    from edgecls.train.checkpoint import model_from_checkpoint
    from edgecls.train.evaluate import evaluate_model

    ckpt = load_checkpoint(weights)
    model, norm = model_from_checkpoint(ckpt), Normalization.from_dict(ckpt["normalization"])
    _, val = train_val_split(load_dataset(dataset, "train", data_dir), split)
    test = load_dataset(dataset, "test", data_dir)
    return {name: evaluate_model(model, data, norm, tta=True)["top1"] for name, data in (("val", val), ("test", test))}


def measured_latency(bundle: str, data_dir: str | None, pause: tuple[int, ...] = ()) -> dict:
    """Batch-1 latency of the deployed CPU graphs (ONNX Runtime FP32 and INT8 U8S8) from `edgecls bench`, refused
    when other processes kept the machine busy meanwhile (the card records how busy they kept it). The processes in
    `pause` (a training beside the shipping) are stopped for the bench alone."""
    for pid in pause:
        os.kill(pid, signal.SIGSTOP)
    try:
        result = run_bench(
            bundle,
            BenchOptions(backends=("onnxruntime",), precisions=("fp32", "int8"), data_dir=data_dir, eval_images=500),
        )
    finally:
        for pid in pause:
            os.kill(pid, signal.SIGCONT)
    busy = busy_notes(None, result["other_cores_busy_during"], result["host"]["logical_cores"] or 1)
    if busy:
        raise SystemExit(f"the card's latency is not written: {busy[0]}; pause them (--pause PID) and ship again")
    latency = {
        "cpu": result["host"]["cpu"],
        "int8_dot_product": result["host"]["int8_dot_product"],
        "logical_cores": result["host"]["logical_cores"],
        "onnxruntime": result["host"]["versions"]["onnxruntime"],
        "frame_size": result["frame_size"],
        "pace_ms": result["pace_ms"],
        "other_cores_busy_during": result["other_cores_busy_during"],
        "rows": {},
    }
    for row in result["rows"]:
        if "skipped" not in row and row["flavour"] in ("", "u8s8"):
            p50 = {
                f"{mode}_{part}_p50": round(row[mode][part]["p50"], 4)
                for mode in ("hot", "paced")
                for part in ("inference_ms", "end_to_end_ms")
            }
            latency["rows"][row["precision"]] = {"threads": row["threads"], **p50}
    return latency


SLICE = 2000  # tests/test_weights.py re-measures the FP32 export on the first SLICE test images
OOD = {"cifar10": "fashion-mnist"}  # the images of none of the classes a card's "unknown" is measured against
# eval --corruptions' default number of test images: the card holds what that command prints
CORRUPTION_IMAGES = next(f.default for f in fields(EvalOptions) if f.name == "corruption_images")


def deployed_figures(bundle: str, dataset: str, data_dir: str | None, ood_data_dir: str | None) -> dict:
    """What `edgecls eval BUNDLE --precision P --ood-dataset OOD --corruptions` reports for each CPU graph: top-1,
    the calibration error, unknown (AUROC and the share of test images called unknown) and the camera-condition suite
    on its first `CORRUPTION_IMAGES` test images."""
    from edgecls.corruptions import SUITE
    from edgecls.data import load_for_model
    from edgecls.evaluate import evaluate_classifier
    from edgecls.runtime import Classifier

    files = {}
    for precision in ("fp32", "fp16", "int8"):
        with Classifier.load(bundle, backend="onnxruntime", precision=precision, device="cpu") as clf:
            test = load_for_model(dataset, "test", data_dir, clf.bundle.input, clf.bundle.preprocess)
            ood = OOD.get(dataset) and load_for_model(
                OOD[dataset], "test", ood_data_dir or data_dir, clf.bundle.input, clf.bundle.preprocess
            )
            report = evaluate_classifier(clf, test, ood=ood or None, corruption_images=CORRUPTION_IMAGES)
        corruptions = report["corruptions"]
        files[clf.info.file] = {
            "top1": report["top1"],
            "confidence.ece": report["confidence"]["ece"],
            "corruptions.mean_top1": corruptions["mean_top1"],
            "corruptions.clean_top1": corruptions["clean_top1"],
            "corruptions.by_corruption": {name: c["mean"] for name, c in corruptions["by_corruption"].items()},
            **(
                {
                    "ood.auroc": report["ood"]["auroc"],
                    "ood.score": report["ood"]["score"],
                    "ood.called_unknown": report["ood"]["unknown_called_unknown"],
                    "test_called_unknown": report["ood"]["known_called_unknown"],
                }
                if ood
                else {}
            ),
        }
    ood_flag = f" --ood-dataset {OOD[dataset]}" if dataset in OOD else ""
    return {
        "command": f"edgecls eval BUNDLE --precision P --backend onnxruntime{ood_flag} --corruptions",
        **({"ood_dataset": f"{OOD[dataset]} test split"} if dataset in OOD else {}),
        "corruptions": {"suite": SUITE, "images": corruptions["images"]},
        "files": files,
    }


def exported_accuracy(
    weights: Path, data_dir: str | None, ood_data_dir: str | None = None, pause: tuple[int, ...] = ()
) -> dict:
    """Export the shipped weights with the default options; the bundle's accuracy, calibration record, CPU
    latency and what eval measures on its graphs (`deployed_figures`)."""
    name, dataset = weights.name.split(".")[:2]
    data = ForeignOptions(dataset=dataset)
    with tempfile.TemporaryDirectory() as tmp:
        export_bundle(name, ExportOptions(fp16=True, int8=True, out=tmp, data_dir=data_dir, foreign=data))
        manifest = json.loads((Path(tmp) / "edgecls.json").read_text())
        latency = measured_latency(tmp, data_dir, pause)
        deployed = deployed_figures(tmp, dataset, data_dir, ood_data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        sliced = export_bundle(name, ExportOptions(out=tmp, data_dir=data_dir, eval_images=SLICE, foreign=data))
    val, test = manifest["accuracy"]["validation"], manifest["accuracy"]["test"]
    dataset_flag = "" if dataset == "cifar10" else f" --dataset {dataset}"
    return {
        "command": f"edgecls export {name}{dataset_flag} --fp16 --int8",
        "val_samples": val["samples"],
        "val_top1": {name: row["top1"] for name, row in val["files"].items()},
        "test_samples": test["samples"],
        "top1": {name: row["top1"] for name, row in test["files"].items()},
        "calibration": {k: manifest["calibration"][k] for k in ("images", "method", "dataset")},
        "latency": latency,
        "deployed": deployed,
        "test_slice": {"images": SLICE, "model.onnx": sliced["accuracy"]["test"]["files"]["model.onnx"]["top1"]},
    }


def choose_calibration(weights: Path, data_dir: str | None) -> dict:
    """The card's INT8 calibration method, chosen on the validation split (never the test set): each method is
    exported, and the one whose worse INT8 graph scores higher on validation wins."""
    name, dataset = weights.name.split(".")[:2]
    scores, samples = {}, None
    for method in ("minmax", "entropy"):
        with tempfile.TemporaryDirectory() as tmp:
            manifest = export_bundle(
                name,
                ExportOptions(
                    int8=True, out=tmp, data_dir=data_dir, calib_method=method, foreign=ForeignOptions(dataset=dataset)
                ),
            )
        val = manifest["accuracy"]["validation"]
        samples, scores[method] = val["samples"], {f: row["top1"] for f, row in val["files"].items()}
    best = max(scores, key=lambda m: min(top1 for f, top1 in scores[m].items() if f != "model.onnx"))
    return {
        "method": best,
        "chosen_on": f"validation split ({samples:,} images): the method whose worse INT8 graph "
        "scores higher, each exported with `edgecls export ... --int8 --calib-method M`",
        "validation_top1": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-dir")
    parser.add_argument("--ood-data-dir", help="where the card's unknown images live (default: --data-dir)")
    parser.add_argument("--command", help="the exact command that trained the run")
    parser.add_argument("--hardware")
    parser.add_argument(
        "--refresh-export", metavar="MODEL", help="only re-measure the export of already shipped weights"
    )
    parser.add_argument(
        "--choose-calibration",
        action="store_true",
        help="pick the card's INT8 calibration method on the validation split first",
    )
    parser.add_argument(
        "--pause",
        type=int,
        action="append",
        default=[],
        metavar="PID",
        help="stop this process (a training beside the shipping) while latency is measured; repeatable",
    )
    args = parser.parse_args()

    if args.refresh_export:
        key = f"{args.refresh_export}.{args.dataset}"
        card = json.loads((WEIGHTS_DIR / f"{key}.json").read_text())
    elif args.run and args.command and args.hardware:
        card = ship(args.run, args.dataset, args.data_dir, args.command, args.hardware)
        key = f"{card['model']}.{args.dataset}"
    else:
        parser.error("give RUN with --command and --hardware, or --refresh-export MODEL")
    weights = WEIGHTS_DIR / f"{key}.pt"
    if sha256_file(weights) != card["weights_sha256"]:
        raise SystemExit(f"{weights} does not match its card; ship it again from its run")
    if args.choose_calibration:
        write_card(key, card)  # export reads the weights' card
        card["calibration_method"] = choose_calibration(weights, args.data_dir)
        write_card(key, card)
    card["export"] = exported_accuracy(weights, args.data_dir, args.ood_data_dir, tuple(args.pause))
    write_card(key, card)
    print(json.dumps({k: card[k] for k in ("model", "epochs_run", "val_top1", "test_top1", "weights_bytes", "export")}))


if __name__ == "__main__":
    main()
