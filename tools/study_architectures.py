"""Study 5: the accuracy–latency trade-off across the zoo, on CIFAR-10 and Fashion-MNIST.

    python tools/study_architectures.py --data-dir DATA --out results/architectures [--quick]
        [--models lenet5,alexnet,vgg16,resnet18,resnet34,mobilenet_v2,mobilenet_mod] [--datasets cifar10,fashion-mnist]

Each model is trained with the same recipe, exported to ONNX and timed through the deploy runtime
(ONNX Runtime, CPU, batch 1, p50 after warm-up). One table (accuracy, parameters, MACs, seconds per
epoch, latency) and one scatter plot per dataset. Datasets missing under DATA are reported and skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _study import study_parser  # noqa: E402

from edgecls.bench import time_calls  # noqa: E402
from edgecls.camera.stats import summarize  # noqa: E402
from edgecls.data import load_dataset  # noqa: E402
from edgecls.data.split import subset  # noqa: E402
from edgecls.errors import DatasetError  # noqa: E402
from edgecls.export.pipeline import ExportOptions, export_bundle  # noqa: E402
from edgecls.plots import scatter  # noqa: E402
from edgecls.report import write_results  # noqa: E402
from edgecls.runtime import Classifier  # noqa: E402
from edgecls.train import TrainConfig, train  # noqa: E402
from edgecls.zoo import count_macs, count_parameters, create_model  # noqa: E402

MODELS = "lenet5,alexnet,vgg16,resnet18,resnet34,mobilenet_v2,mobilenet_mod"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = study_parser(__doc__)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--datasets", default="cifar10,fashion-mnist")
    parser.add_argument("--latency-iterations", type=int, default=200)
    args = parser.parse_args(argv)
    out = Path(args.out)
    epochs = args.epochs or (1 if args.quick else 15)
    rows = []
    for dataset in args.datasets.split(","):
        try:
            train_set, test = (
                load_dataset(dataset, "train", args.data_dir),
                load_dataset(dataset, "test", args.data_dir),
            )
        except DatasetError as exc:
            print(f"skipping {dataset}: {exc}")
            rows.append({"dataset": dataset, "model": "—", "note": f"not available: {str(exc)[:80]}"})
            continue
        if args.quick:
            train_set, test = subset(train_set, 600, 0), subset(test, 200, 0)
        points = []
        for model in args.models.split(","):
            run = out / "runs" / f"{dataset}-{model}"
            summary = train(
                TrainConfig(model=model, dataset=dataset, out=str(run), epochs=epochs, device=args.device, lr=0.05),
                train_set,
                test,
                quiet=True,
            )
            bundle = export_bundle(
                summary["checkpoint"], ExportOptions(out=str(run / "bundle")), test_set=test, train_set=train_set
            )
            clf = Classifier.load(run / "bundle", backend="onnxruntime", precision="fp32", device="cpu")
            x = clf.preprocessor.batch_from_images(test.images[:1])
            latency = summarize(time_calls(clf.backend, x, args.latency_iterations, 20))
            net = create_model(model, in_channels=test.in_channels, input_size=test.input_size)
            row = {
                "dataset": dataset,
                "model": model,
                "epochs": epochs,
                "test_top1": summary["test_top1"],
                "params": count_parameters(net),
                "mmacs": count_macs(net, test.in_channels, test.input_size) / 1e6,
                "s_per_epoch": float(np.mean([h["epoch_s"] for h in summary["history"]])),
                "ort_cpu_p50_ms": latency["p50"],
                "ort_cpu_p99_ms": latency["p99"],
                "onnx_mb": bundle["files"]["model.onnx"]["bytes"] / 1e6,
            }
            rows.append(row)
            points.append({"latency p50 (ms)": row["ort_cpu_p50_ms"], "test top-1": row["test_top1"], "model": model})
            print(f"{dataset:14s} {model:14s} top-1 {row['test_top1']:.2%}  p50 {row['ort_cpu_p50_ms']:.3f} ms")
        scatter(
            points,
            "latency p50 (ms)",
            "test top-1",
            "model",
            out / f"architectures-{dataset}.png",
            f"{dataset}: accuracy vs ONNX Runtime CPU latency ({epochs} epochs)",
        )
    write_results(
        out,
        "architectures",
        rows,
        [
            "dataset",
            "model",
            "epochs",
            "test_top1",
            "params",
            "mmacs",
            "s_per_epoch",
            "ort_cpu_p50_ms",
            "ort_cpu_p99_ms",
            "onnx_mb",
            "note",
        ],
        {"epochs": epochs, "latency": "ONNX Runtime CPU, batch 1, p50/p99 after 20 warm-up calls"},
    )
    return rows


if __name__ == "__main__":
    main()
