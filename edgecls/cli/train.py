"""Commands about models and their accuracy: `models`, `train`, `eval`, `baseline`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgecls.cli.app import (
    app,
    emit_json,
    entry_point,
    fields_of,
    options_command,
    out,
    parse_model_args,
    print_report,
)
from edgecls.errors import ConfigError
from edgecls.measure_options import BaselineOptions, EvalOptions
from edgecls.runtime.options import LoadOptions
from edgecls.train.config import TrainConfig


@app.command()
def models(
    json_path: Annotated[
        str | None, typer.Option("--json", help="also write the table as JSON here ('-': stdout only)")
    ] = None,
) -> None:
    """List the model zoo: parameters, MACs at 32×32 RGB, bundled CIFAR-10 accuracy (card data: no torch needed)."""
    from edgecls.zoo.catalog import load_catalog
    from edgecls.zoo.pretrained import model_card

    table = Table(
        title="edgecls model zoo (10 classes, 32×32 RGB); latency: batch 1 from a camera frame, one call every "
        "33 ms, ONNX Runtime on the CPU the card names"
    )
    for col in ("model", "params", "MMACs", "bundled CIFAR-10 top-1", "FP32 / INT8 ms", "published", "description"):
        table.add_column(col)
    cpus: dict[str, list[str]] = {}
    entries = []
    for name, info in load_catalog().items():
        card = model_card(name)
        acc = f"{card.test_top1:.2%}" if card else "—"
        latency = (card.export or {}).get("latency") if card else None
        ms = "—"
        if latency:
            rows = latency["rows"]
            ms = " / ".join(f"{rows[p]['paced_end_to_end_ms_p50']:.2f}" if p in rows else "—" for p in ("fp32", "int8"))
            cpus.setdefault(_machine(latency), []).append(name)
        table.add_row(
            name, f"{info['parameters']:,}", f"{info['macs_32x32'] / 1e6:.1f}", acc, ms, info["paper"], info["summary"]
        )
        entries.append(
            {
                "name": name,
                "parameters": info["parameters"],
                "macs_32x32": info["macs_32x32"],
                "bundled_test_top1": card.test_top1 if card else None,
                "latency": latency,
                "paper": info["paper"],
                "summary": info["summary"],
            }
        )
    if json_path != "-":
        out.print(table)
        for described, names in sorted(cpus.items()):
            out.print(f"latency of {', '.join(names)} measured on: {described}")
        if len(cpus) > 1:
            out.print("[yellow]rows measured on different machines do not compare[/yellow]")
    if json_path:
        emit_json({"schema": "edgecls.models/1", "models": entries}, json_path)


def _machine(latency: dict) -> str:
    """The machine a card's latency rows come from, in words; the INT8 dot-product instructions are named because
    ONNX Runtime's INT8 speed depends on them more than on the CPU's model name."""
    dot = latency.get("int8_dot_product")
    dot = "INT8 dot product not recorded" if dot is None else f"INT8 dot product: {dot}"
    return f"{latency['cpu']} ({dot}), {latency['logical_cores']} cores, onnxruntime {latency['onnxruntime']}"


@app.command()
@options_command(
    TrainConfig,
    arguments=("model",),
    converters={"model_kwargs": (list[str], parse_model_args)},
)
def train(ctx: typer.Context, settings: dict) -> None:
    """Train a zoo model; writes best.pt/last.pt, history.json, curves.png and the test report."""
    from edgecls.zoo.catalog import check_model_name

    check_model_name(settings["model"])
    from edgecls.train.recipes import recipe_settings

    for key, value in recipe_settings(settings["recipe"]).items():
        source = ctx.get_parameter_source(key)
        if source is None or source.name == "DEFAULT":
            settings[key] = value
    config = TrainConfig(**settings)  # checked before torch is imported
    from edgecls.train import train as run_training
    from edgecls.train.allocator import reexec_under_tcmalloc
    from edgecls.train.loop import pick_device

    if entry_point() and pick_device(config.device).type == "cpu":
        reexec_under_tcmalloc()
    run_training(config)


@app.command("eval")
@options_command(EvalOptions, LoadOptions, arguments=("source",))
def evaluate(ctx: typer.Context, settings: dict) -> None:
    """Accuracy, top-5, per-class precision/recall/F1/BCR and the confusion matrix on the test split. A bundle runs
    through its runtime on all cores unless --threads says otherwise (evaluation is a batch job); a checkpoint runs
    through PyTorch on --device."""
    options = EvalOptions(**fields_of(EvalOptions, settings))
    load = LoadOptions(**fields_of(LoadOptions, settings))
    from edgecls.zoo.catalog import check_bare_name

    check_bare_name(options.source)
    if (Path(options.source) / "edgecls.json").is_file():
        _evaluate_bundle(options, dataclasses.replace(load, threads=0 if load.threads is None else load.threads))
    else:
        _evaluate_checkpoint(options, load)


def _evaluate_bundle(options: EvalOptions, load: LoadOptions) -> None:
    if options.tta:
        raise ConfigError("--tta applies to checkpoints only: a bundle's graphs run one view, as deployed")
    from edgecls.data import load_for_model
    from edgecls.evaluate import evaluate_classifier, report_header
    from edgecls.runtime import Classifier
    from edgecls.train import torch_backend  # noqa: F401  (registers --backend torch)

    classifier = Classifier.load(options.source, **dataclasses.asdict(load))
    bundle = classifier.bundle
    dataset = options.dataset or bundle.manifest.dataset
    if dataset is None:
        raise ConfigError(
            f"{options.source} records no dataset (it was exported from unlabelled images): pass --dataset NAME "
            "--data-dir DIR, or check it on its own sample with `edgecls doctor`"
        )
    data = load_for_model(dataset, "test", options.data_dir, bundle.input, bundle.preprocess, options.skip_bad_images)
    data.require_classes(classifier.classes, f"bundle {options.source}")
    info = classifier.info
    header = report_header(
        bundle.manifest.model,
        f"bundle {options.source} ({bundle.digest[:19]}…)",
        f"{info.name}/{info.device}",
        info.precision,
        data,
        file=info.file,
        bundle=str(options.source),
    )
    ood = None
    if options.ood_dataset:
        ood_dir = options.ood_data_dir or options.data_dir
        ood = load_for_model(options.ood_dataset, "test", ood_dir, bundle.input, bundle.preprocess)
    corruption_images = options.corruption_images if options.corruptions else None
    report = evaluate_classifier(
        classifier, data, out_json=options.json_path, header=header, ood=ood, corruption_images=corruption_images
    )
    print_report(report, f"{classifier.describe()} on {data.name}", options.json_path)


def _evaluate_checkpoint(options: EvalOptions, load: LoadOptions) -> None:
    from edgecls.data import load_for_model
    from edgecls.evaluate import report_header
    from edgecls.export.sources import checkpoint_source
    from edgecls.train.evaluate import evaluate_model
    from edgecls.train.loop import pick_device

    if (load.backend, load.precision, load.threads) != ("auto", "auto", None):
        raise ConfigError("--backend, --precision and --threads apply to bundles: a checkpoint runs in PyTorch FP32")
    if options.ood_dataset or options.corruptions:
        raise ConfigError(
            "--ood-dataset and --corruptions measure a deployed bundle through its runtime: export the checkpoint "
            "(edgecls export CHECKPOINT) and evaluate the bundle"
        )
    src = checkpoint_source(options.source, dataset=options.dataset)
    dataset = options.dataset or src.dataset
    data = load_for_model(dataset, "test", options.data_dir, src.input, src.preprocess, options.skip_bad_images)
    data.require_classes(src.classes, src.name)
    device = str(pick_device(load.device))
    header = report_header(src.name, src.description, f"torch/{device}", "fp32", data, tta=options.tta)
    report = evaluate_model(
        src.module,
        data,
        src.preprocess.normalization,
        device=device,
        out_json=options.json_path,
        tta=options.tta,
        header=header,
    )
    views = ", 6-view TTA" if options.tta else ""
    print_report(report, f"{src.name} ({src.description}) on {data.name}{views}", options.json_path)


@app.command()
@options_command(BaselineOptions, arguments=("method",))
def baseline(ctx: typer.Context, settings: dict) -> None:
    """Classical baselines on raw pixels (scikit-learn): kNN or nearest centroid."""
    options = BaselineOptions(**settings)
    from edgecls import baselines
    from edgecls.data import load_dataset
    from edgecls.data.split import subset as take_subset
    from edgecls.fileio import atomic_write_json

    train_set = take_subset(load_dataset(options.dataset, "train", options.data_dir), options.subset, 0)
    test_set = load_dataset(options.dataset, "test", options.data_dir)
    if options.method == "knn":
        report = baselines.knn(train_set, test_set, options.k, options.metric, options.normalization)
        title = f"knn ({options.metric}, {options.normalization}, k={options.k}) on {test_set.name}"
    else:
        report = baselines.nearest_centroid(train_set, test_set, options.metric, options.normalization)
        title = f"centroid ({options.metric}, {options.normalization}) on {test_set.name}"
    if options.json_path:
        atomic_write_json(options.json_path, report)
    print_report(report, title)
