"""The `edgecls` command line: every command parses its options and calls one library function.

Heavy modules (torch, onnx, cv2) are imported inside the commands, so `edgecls --help` is instant and
works on a runtime-only install.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgecls.errors import ConfigError, EdgeclsError

app = typer.Typer(
    help="edgecls — train CIFAR-style classifiers, export them to ONNX FP32/FP16/INT8 and TensorRT, and run them "
         "on a camera.\n\nA tour: `edgecls models` lists the zoo · `edgecls train mobilenet_mod` trains · `edgecls eval` "
         "reports accuracy · `edgecls export mobilenet_mod --int8` writes a deployable bundle · `edgecls build-engine` "
         "makes TensorRT engines on the target · `edgecls camera BUNDLE --source 0` classifies live video · "
         "`edgecls bench BUNDLE` compares backends and precisions in one table · `edgecls serve BUNDLE` serves a fleet "
         "through Triton.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
out = Console(width=None if sys.stdout.isatty() else 160)


def Flag(*names: str, **kwargs):  # noqa: N802 (used like typer.Option)
    """A boolean option shown as the flag it is (typer's rich help would print a `<bool>` value after it)."""
    return typer.Option(*names, metavar="", **kwargs)


DataDir = Annotated[str | None, typer.Option("--data-dir", help="dataset root (default: $EDGECLS_DATA)")]
PublicKey = Annotated[str | None, typer.Option(help="use the bundle only if signed by this Ed25519 public key (PEM file; "
                                                   "default: $EDGECLS_PUBLIC_KEY when set)")]
SkipBadImages = Annotated[bool, Flag("--skip-bad-images", help="image folders: leave out (and name) undecodable "
                                                                         "or truncated files instead of failing")]


_ENTRY_POINT = False  # set by main(): `edgecls ...` or `python -m edgecls ...`, not CliRunner


def _parse_model_args(pairs: list[str]) -> dict:
    parsed = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--model-arg takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"{flag} takes comma-separated numbers such as 0.485,0.456,0.406, got {text!r}") from exc


@app.command()
def models(
    json_path: Annotated[str | None, typer.Option("--json", help="also write the table as JSON here ('-': stdout only)")] = None,
) -> None:
    """List the model zoo: parameters, MACs at 32×32 RGB, bundled CIFAR-10 accuracy (card data: no torch needed)."""
    from edgecls.zoo.catalog import load_catalog
    from edgecls.zoo.pretrained import model_card

    table = Table(title="edgecls model zoo (10 classes, 32×32 RGB); latency: batch 1 from a camera frame, one call every "
                        "33 ms, ONNX Runtime on the CPU the card names")
    for col in ("model", "params", "MMACs", "bundled CIFAR-10 top-1", "FP32 / INT8 ms", "published", "description"):
        table.add_column(col)
    cpus = set()
    entries = []
    for name, info in load_catalog().items():
        card = model_card(name)
        acc = f"{card['test_top1']:.2%}" if card else "—"
        latency = (card or {}).get("export", {}).get("latency")
        ms = "—"
        if latency:
            rows = latency["rows"]
            ms = " / ".join(f"{rows[p]['paced_end_to_end_ms_p50']:.2f}" if p in rows else "—" for p in ("fp32", "int8"))
            cpus.add(f"{latency['cpu']}, {latency['logical_cores']} cores, onnxruntime {latency['onnxruntime']}")
        table.add_row(name, f"{info['parameters']:,}", f"{info['macs_32x32'] / 1e6:.1f}", acc, ms, info["paper"], info["summary"])
        entries.append({"name": name, "parameters": info["parameters"], "macs_32x32": info["macs_32x32"],
                        "bundled_test_top1": card["test_top1"] if card else None, "latency": latency, "paper": info["paper"],
                        "summary": info["summary"]})
    if json_path != "-":
        out.print(table)
        if cpus:
            out.print(f"latency measured on: {'; '.join(sorted(cpus))}")
    if json_path:
        _emit_json({"schema": "edgecls.models/1", "models": entries}, json_path)


@app.command()
def train(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="zoo model name, see `edgecls models`")],
    recipe: Annotated[str | None, typer.Option(help="preset whose settings replace the defaults of every option not given "
                                                    "explicitly: fast (airbench for CPUs: whitened_vgg, 12 epochs)")] = None,
    dataset: Annotated[str, typer.Option(help="cifar10, cifar100, cifar100-coarse, mnist, fashion-mnist, folder")] = "cifar10",
    data_dir: DataDir = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="run directory (default runs/MODEL)")] = None,
    epochs: Annotated[int, typer.Option(help="passes over the training split")] = 30,
    batch_size: Annotated[int, typer.Option(help="images per optimizer step (per process under torchrun)")] = 128,
    optimizer: Annotated[str, typer.Option(help="sgd, adam, adamw, adadelta")] = "sgd",
    lr: Annotated[float, typer.Option(help="peak learning rate (after warm-up)")] = 0.05,
    momentum: Annotated[float, typer.Option(help="SGD momentum (Adam: beta1)")] = 0.9,
    nesterov: Annotated[bool, Flag(help="Nesterov momentum, for SGD")] = True,
    weight_decay: Annotated[float, typer.Option(help="L2 weight decay")] = 5e-4,
    schedule: Annotated[str, typer.Option(help="cosine (with warm-up), step, plateau, constant")] = "cosine",
    warmup_epochs: Annotated[float, typer.Option(help="linear warm-up of the learning rate, in epochs")] = 1.0,
    step_size: Annotated[int, typer.Option(help="--schedule step: epochs between decays")] = 30,
    gamma: Annotated[float, typer.Option(help="--schedule step/plateau: decay factor")] = 0.1,
    label_smoothing: Annotated[float, typer.Option(help="label smoothing in [0, 1)")] = 0.0,
    class_weighted: Annotated[bool, Flag(help="inverse-frequency class weights in the loss")] = False,
    early_stopping: Annotated[int, typer.Option(help="stop after N epochs without validation gain (0: off)")] = 0,
    subset: Annotated[int | None, typer.Option(help="train on N class-balanced images (quick runs)")] = None,
    val_fraction: Annotated[float, typer.Option(help="share of the training set held out for validation (model selection)")] = 0.1,
    seed: Annotated[int, typer.Option(help="seed of the split, the order and the augmentation")] = 0,
    amp: Annotated[bool, Flag(help="mixed precision on CUDA")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
    normalization: Annotated[str, typer.Option(help="zscore (dataset statistics) or minmax")] = "zscore",
    augment: Annotated[bool, Flag(help="random crop and flip (no flip for MNIST digits)")] = True,
    rotate: Annotated[float, typer.Option(help="random rotation, ± degrees")] = 0.0,
    shift: Annotated[float, typer.Option(help="random shift, ± fraction of the size")] = 0.0,
    erase: Annotated[float, typer.Option(help="random erasing: probability an image gets one blanked rectangle (0: off)")] = 0.0,
    init_from: Annotated[str | None, typer.Option(help="checkpoint to start from; the head is replaced if classes differ")] = None,
    trainable_blocks: Annotated[int | None, typer.Option(help="with --init-from: train only the last N blocks")] = None,
    resume: Annotated[bool, Flag(help="continue from OUT/last.pt with the run's own options")] = False,
    resume_override: Annotated[bool, Flag(help="with --resume: accept options that change the model, data or "
                                                       "schedule (printed)")] = False,
    image_size: Annotated[int | None, typer.Option(help="resize folder datasets to N×N")] = None,
    skip_bad_images: SkipBadImages = False,
    model_arg: Annotated[list[str], typer.Option(help="extra builder argument KEY=VALUE, e.g. leaky_relu=0.1")] = [],  # noqa: B006
    crop_padding: Annotated[int, typer.Option(help="random-crop padding in pixels (0: no crop)")] = 4,
    pad_mode: Annotated[str, typer.Option(help="crop padding: zeros or reflect")] = "zeros",
    alternating_flip: Annotated[bool, Flag(help="mirror each image on every other epoch instead of at random")] = False,
    micro_batch_size: Annotated[int | None, typer.Option(help="compute each batch in micro-batches of N (same gradient, "
                                                                 "per-micro-batch BatchNorm; faster on CPUs)")] = None,
    bias_lr_scale: Annotated[float, typer.Option(help="learning-rate multiple for BatchNorm shifts")] = 1.0,
    lookahead: Annotated[bool, Flag(help="Lookahead weight averaging every 5 steps (airbench schedule)")] = False,
    whiten_init: Annotated[bool, Flag(help="fit the model's whitening stem to training patches")] = False,
    whiten_bias_epochs: Annotated[int, typer.Option(help="with --whiten-init: epochs the stem's bias trains before it freezes")] = 3,
) -> None:
    """Train a zoo model; writes best.pt/last.pt, history.json, curves.png and the test report."""
    from edgecls.zoo.catalog import check_model_name

    check_model_name(model)
    from edgecls.train import TrainConfig
    from edgecls.train import train as run_training
    from edgecls.train.allocator import reexec_under_tcmalloc
    from edgecls.train.loop import pick_device
    from edgecls.train.recipes import recipe_settings

    settings = dict(
        model=model, dataset=dataset, data_dir=data_dir, out=out_dir or f"runs/{model}", epochs=epochs,
        batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov,
        weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs, step_size=step_size, gamma=gamma,
        label_smoothing=label_smoothing, class_weighted=class_weighted, early_stopping=early_stopping, subset=subset,
        val_fraction=val_fraction, seed=seed, amp=amp, device=device, normalization=normalization, augment=augment,
        rotate_degrees=rotate, shift_fraction=shift, erase=erase, init_from=init_from, trainable_blocks=trainable_blocks,
        resume=resume, resume_override=resume_override, image_size=image_size, skip_bad_images=skip_bad_images,
        model_kwargs=_parse_model_args(model_arg),
        crop_padding=crop_padding,
        pad_mode=pad_mode, alternating_flip=alternating_flip, micro_batch_size=micro_batch_size, bias_lr_scale=bias_lr_scale,
        lookahead=lookahead, whiten_init=whiten_init, whiten_bias_epochs=whiten_bias_epochs, recipe=recipe,
    )
    for key, value in recipe_settings(recipe).items():
        source = ctx.get_parameter_source(key)
        if source is None or source.name == "DEFAULT":
            settings[key] = value
    config = TrainConfig(**settings)
    if _ENTRY_POINT and pick_device(config.device).type == "cpu":
        reexec_under_tcmalloc()
    run_training(config)


@app.command("eval")
def evaluate(
    source: Annotated[str, typer.Argument(help="checkpoint, run directory, zoo model with bundled weights, or an exported bundle")],
    dataset: str | None = typer.Option(None, help="default: the dataset the model was trained on"),
    data_dir: DataDir = None,
    json_path: Annotated[str | None, typer.Option("--json", help="write the report here (+ confusion/examples PNG)")] = None,
    device: Annotated[str, typer.Option(help="checkpoints: auto, cpu, cuda; bundles: auto, cpu, cuda:N")] = "auto",
    backend: Annotated[str, typer.Option(help="bundles only: auto, onnxruntime, tensorrt, torch")] = "auto",
    precision: Annotated[str, typer.Option(help="bundles only: auto, fp32, fp16, int8")] = "auto",
    tta: Annotated[bool, Flag(help="checkpoints only: average 6 flipped/shifted views (an evaluation aid; "
                                           "deployed graphs see one view)")] = False,
    threads: Annotated[int, typer.Option(help="bundles only: host inference threads (0: all cores; evaluation is a batch job)")] = 0,
    skip_bad_images: SkipBadImages = False,
    public_key: PublicKey = None,
) -> None:
    """Accuracy, top-5, per-class precision/recall/F1/BCR and the confusion matrix on the test split."""
    from edgecls.zoo.catalog import check_bare_name

    check_bare_name(source)
    from edgecls.data import load_for_model

    if (Path(source) / "edgecls.json").is_file():
        if tta:
            raise ConfigError("--tta applies to checkpoints only: a bundle's graphs run one view, as deployed")
        from edgecls.evaluate import evaluate_classifier, report_header
        from edgecls.runtime import Classifier

        classifier = Classifier.load(source, backend=backend, precision=precision, device=device, threads=threads,
                                     public_key=public_key)
        dataset = dataset or classifier.bundle.manifest.get("dataset")
        if dataset is None:
            raise ConfigError(f"{source} records no dataset (it was exported from unlabelled images): pass --dataset NAME "
                              "--data-dir DIR, or check it on its own sample with `edgecls doctor`")
        data = load_for_model(dataset, "test", data_dir, classifier.bundle.input, classifier.bundle.preprocess,
                              skip_bad_images)
        data.require_classes(classifier.classes, f"bundle {source}")
        info = classifier.info
        header = report_header(classifier.bundle.manifest["model"], f"bundle {source} ({classifier.bundle.digest[:19]}…)",
                               f"{info.name}/{info.device}", info.precision, data, file=info.file, bundle=str(source))
        report = evaluate_classifier(classifier, data, out_json=json_path, header=header)
        _print_report(report, f"{classifier.describe()} on {data.name}", json_path)
        return

    from edgecls.data.transforms import Normalization
    from edgecls.evaluate import evaluate_model, report_header
    from edgecls.export.sources import checkpoint_source
    from edgecls.train.loop import pick_device

    src = checkpoint_source(source, dataset=dataset)
    ckpt = src.checkpoint
    data = load_for_model(dataset or src.dataset, "test", data_dir, ckpt["input"], src.preprocess, skip_bad_images)
    data.require_classes(src.classes, src.name)
    torch_device = str(pick_device(device))
    header = report_header(src.name, src.description, f"torch/{torch_device}", "fp32", data, tta=tta)
    report = evaluate_model(src.module, data, Normalization.from_dict(ckpt["normalization"]),
                            device=torch_device, out_json=json_path, tta=tta, header=header)
    _print_report(report, f"{src.name} ({src.description}) on {data.name}" + (", 6-view TTA" if tta else ""), json_path)


def _emit_json(obj, path: str) -> None:
    """`--json PATH` writes PATH atomically and says so; `--json -` prints to stdout (for jq and scripts)."""
    if path == "-":
        sys.stdout.write(json.dumps(obj, indent=2) + "\n")
        return
    from edgecls.fileio import atomic_write_json

    atomic_write_json(path, obj)
    Console(stderr=True).print(f"wrote {path}")


def _print_report(report: dict, title: str, json_path: str | None = None) -> None:
    table = Table(title=title)
    for col in ("class", "precision", "recall", "F1", "BCR", "support"):
        table.add_column(col)
    for row in report["per_class"]:
        table.add_row(row["class"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                      f"{row['bcr']:.3f}", str(row["support"]))
    m = report["macro"]
    table.add_row("macro", f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", f"{m['bcr']:.3f}",
                  str(report["samples"]), style="bold")
    out.print(table)
    out.print(f"top-1 {report['top1']:.2%}   top-5 {report['top5']:.2%}   best: {', '.join(report['best'][:3])}   "
              f"worst: {', '.join(report['worst'][:3])}")
    if json_path:
        stem = Path(json_path).with_suffix("")
        out.print(f"wrote {json_path}, {stem}.confusion.png, {stem}.examples.png")


@app.command()
def baseline(
    method: Annotated[str, typer.Argument(help="knn or centroid")],
    k: Annotated[int, typer.Option(help="neighbours, for knn")] = 1,
    metric: Annotated[str, typer.Option(help="l1, l2 or cosine")] = "l2",
    normalization: Annotated[str, typer.Option(help="zscore or minmax")] = "zscore",
    dataset: Annotated[str, typer.Option(help="cifar10, cifar100, cifar100-coarse, mnist, fashion-mnist, folder")] = "cifar10",
    data_dir: DataDir = None,
    subset: Annotated[int | None, typer.Option(help="use N class-balanced training images")] = None,
    json_path: Annotated[str | None, typer.Option("--json", help="write the report here (+ confusion/examples PNG)")] = None,
) -> None:
    """Classical baselines on raw pixels (scikit-learn): kNN or nearest centroid."""
    from edgecls import baselines
    from edgecls.data import load_dataset
    from edgecls.data.split import subset as take_subset
    from edgecls.fileio import atomic_write_json

    train_set = take_subset(load_dataset(dataset, "train", data_dir), subset, 0)
    test_set = load_dataset(dataset, "test", data_dir)
    if method == "knn":
        report = baselines.knn(train_set, test_set, k, metric, normalization)
    elif method == "centroid":
        report = baselines.nearest_centroid(train_set, test_set, metric, normalization)
    else:
        raise ConfigError(f"baseline method must be knn or centroid, got {method!r}")
    if json_path:
        atomic_write_json(json_path, report)
    _print_report(report, f"{method} ({metric}, {normalization}{', k=' + str(k) if method == 'knn' else ''}) on {test_set.name}")


@app.command()
def formats() -> None:
    """The files a bundle can hold, what each is for and what it needs."""
    from edgecls.export.formats import FORMATS

    table = Table(title="bundle formats")
    for col in ("key", "file", "precision", "flavour", "target", "needs", "description"):
        table.add_column(col)
    for f in FORMATS:
        table.add_row(f.key, f.file, f.precision, f.flavour or "—", f.target, f.needs, f.description)
    out.print(table)


@app.command()
def export(
    source: Annotated[str, typer.Argument(help="zoo model with bundled weights (e.g. mobilenet_mod), a checkpoint .pt or run "
                                               "directory, your own module (file.py:NAME, package.module:NAME, "
                                               "torchvision:NAME, with --weights) or an .onnx file")],
    fp16: Annotated[bool, Flag("--fp16", help="add model.fp16.onnx")] = False,
    int8: Annotated[bool, Flag("--int8", help="add CIFAR-calibrated INT8 Q/DQ graphs")] = False,
    out_dir: Annotated[str | None, typer.Option("--out", help="bundle directory (default exports/MODEL)")] = None,
    data_dir: DataDir = None,
    calib_images: Annotated[int, typer.Option(help="training images for calibration, stratified by class")] = 1024,
    calib_method: Annotated[str | None, typer.Option(help="minmax, entropy or percentile (default: the model card's "
                                                          "choice for bundled weights, else minmax)")] = None,
    target: Annotated[str, typer.Option(help="cpu (U8S8), tensorrt (S8S8 + cache + engines) or all")] = "all",
    max_accuracy_drop: Annotated[float, typer.Option(help="INT8 may lose at most this many points vs FP32")] = 1.0,
    allow_accuracy_drop: Annotated[bool, Flag(help="write the bundle even if INT8 fails the validation gate")] = False,
    eval_images: Annotated[int | None, typer.Option(help="evaluate on the first N test images only")] = None,
    exclude_node: Annotated[list[str], typer.Option(help="ONNX node kept in float in the INT8 graphs (repeatable)")] = [],  # noqa: B006
    triton: Annotated[str | None, typer.Option(help="also write a Triton Inference Server model repository here")] = None,
    dataset: Annotated[str | None, typer.Option(help="calibration, gate and test data (default: the model's own; your own "
                                                     "models: cifar10, cifar100, mnist, fashion-mnist, folder)")] = None,
    weights: Annotated[str | None, typer.Option(help="your own module: its state dict (.pt/.pth; bare, or under "
                                                     "state_dict/model_state_dict/model; `module.` prefixes handled)")] = None,
    model_arg: Annotated[list[str], typer.Option(help="your own module: builder argument KEY=VALUE (repeatable)")] = [],  # noqa: B006
    mean: Annotated[str | None, typer.Option(help="your own model: per-channel mean, torchvision's 0–1 convention "
                                                  "(ImageNet: 0.485,0.456,0.406)")] = None,
    std: Annotated[str | None, typer.Option(help="your own model: per-channel std, 0–1 convention (ImageNet: "
                                                 "0.229,0.224,0.225)")] = None,
    color: Annotated[str, typer.Option(help="your own model: channel order it was trained on, rgb or bgr")] = "rgb",
    size: Annotated[int | None, typer.Option(help="your own model: input side in pixels (read from a fixed ONNX input)")] = None,
    resize_shorter: Annotated[int | None, typer.Option(help="your own model: trained with 'resize the shorter side to N, "
                                                            "centre-crop --size' (ImageNet: 256); default: the whole centre "
                                                            "square")] = None,
    labels: Annotated[str | None, typer.Option(help="your own model: class names, one per line in output order "
                                                    "(default: the dataset's)")] = None,
    name: Annotated[str | None, typer.Option(help="your own model: its name in the bundle (default: NAME or the file's stem)")] = None,
    tensorrt8: Annotated[bool, Flag("--tensorrt8", help="also write the INT8 graph TensorRT 8.6 (JetPack 5) can "
                                                                "build: ModelOpt with FP32 layers, opset 17")] = False,
    calib_dir: Annotated[str | None, typer.Option(help="unlabelled images of the scene: INT8 calibration, and (without "
                                                       "--dataset) a gate on top-1 agreement with FP32 on held-out ones")] = None,
) -> None:
    """Write a deployable bundle: ONNX FP32 (+FP16, +INT8 U8S8/S8S8), manifest, TensorRT engines where possible."""
    from edgecls.zoo.catalog import check_bare_name

    check_bare_name(source)
    from edgecls.export.pipeline import ExportOptions, export_bundle
    from edgecls.export.sources import ForeignOptions

    foreign = ForeignOptions(weights=weights, model_args=_parse_model_args(model_arg), mean=_floats(mean, "--mean"),
                             std=_floats(std, "--std"), color=color, size=size, resize_shorter=resize_shorter, labels=labels,
                             dataset=dataset, name=name)
    options = ExportOptions(fp16=fp16, int8=int8, out=out_dir, data_dir=data_dir, calib_images=calib_images,
                            calib_method=calib_method, target=target, max_accuracy_drop=max_accuracy_drop,
                            allow_accuracy_drop=allow_accuracy_drop, eval_images=eval_images,
                            exclude_nodes=tuple(exclude_node), foreign=foreign, calib_dir=calib_dir,
                            tensorrt8=tensorrt8)
    manifest = export_bundle(source, options)
    if triton:
        from edgecls.export.triton import write_triton_repository

        bundle_dir = out_dir or f"exports/{manifest['model']}"
        written = write_triton_repository(bundle_dir, triton)
        out.print(f"Triton model repository: {', '.join(str(p) for p in written)}")


@app.command("build-engine")
def build_engine(
    bundle: Annotated[str, typer.Argument(help="bundle directory written by `edgecls export`")],
    precision: Annotated[list[str], typer.Option(help="fp16 and/or int8 (repeatable)")] = ["fp16", "int8"],  # noqa: B006
    max_batch: Annotated[int, typer.Option(help="largest batch the engine's optimization profile accepts")] = 64,
) -> None:
    """Build TensorRT engines for this GPU from a bundle's ONNX files (run it on the target device)."""
    from edgecls.runtime.engines import build_bundle_engines

    for engine in build_bundle_engines(bundle, tuple(precision), max_batch=max_batch):
        out.print(f"built {engine['precision']} engine ({engine['mode']}) for {engine['gpu']} sm_{engine['compute_capability']}, "
                  f"TensorRT {engine['tensorrt']}: {engine['file']} in the engine cache, where the runtime looks")


@app.command()
def doctor(
    bundle: Annotated[str, typer.Argument(help="bundle directory (copied to the target as it is)")],
    iterations: Annotated[int, typer.Option(help="batch-1 calls timed per row")] = 100,
    json_path: Annotated[str | None, typer.Option("--json", help="write the full report here")] = None,
    first_run: Annotated[bool, Flag("--first-run", help="every check a first Jetson or GPU desktop should run "
                                                                "(engines, batch sizes, threads, memory, providers, "
                                                                "adapters, cameras): PASS/FAIL/WARN/SKIP and a JSON report "
                                                                "(default edgecls-first-run.json) to send back")] = False,
) -> None:
    """On the target: what is installed, and whether every backend here gives the bundle's answers on its own sample."""
    from rich.markup import escape

    from edgecls.doctor import run_doctor
    from edgecls.fileio import atomic_write_json

    if first_run:
        from edgecls.first_run import run_first_run

        colours = {"PASS": "green", "FAIL": "bold red", "WARN": "yellow", "SKIP": "dim"}
        report = run_first_run(bundle, progress=lambda c: out.print(f"[{colours[c.status]}]{c.status}[/] {escape(c.name)}: "
                                                                     f"{escape(c.detail)}"))
        path = json_path or "edgecls-first-run.json"
        atomic_write_json(path, report)
        out.print(f"[bold]{' · '.join(f'{n} {s}' for s, n in report['counts'].items())}[/]; report written to {path}: "
                  "send it back with the bundle's edgecls.json")
        if not report["ok"]:
            raise typer.Exit(1)
        return

    report = run_doctor(bundle, iterations)
    env = report["environment"]
    out.print(f"[bold]{report['model']}[/] — {env['cpu']} ({env['logical_cores']} cores, INT8 dot product: "
              f"{env['int8_dot_product']}), GPUs: {', '.join(env['gpus']) or 'none'}")
    out.print(f"TensorRT {env['tensorrt'] or 'not installed'}; CUDA API {env['cuda_api'] or 'none'}, "
              f"{env['cuda_devices']} device(s){' (' + env['cuda_problem'] + ')' if env['cuda_problem'] else ''}; "
              f"ONNX Runtime {env['versions']['onnxruntime']} providers {', '.join(env['onnxruntime_providers'])}; "
              f"cameras: {', '.join(env['cameras']) or 'none'}")
    io = env["video_io"]
    out.print(f"OpenCV {io['opencv']} ({', '.join(env['opencv_packages']) or io['module']}), GStreamer "
              f"{'yes' if io['gstreamer'] else 'no'}; sources it opens: "
              + "; ".join(f"{kind} {escape(answer)}" for kind, answer in env["video_sources"].items()))
    for warning in env["warnings"]:
        out.print(f"[bold yellow]WARN[/] {escape(warning)}")
    table = Table(title=f"{report['sample']['images']} labelled images carried by the bundle, against ONNX Runtime FP32 here")
    for col in ("backend", "precision", "status", "top-1", "agreement", "max |Δ logit|", "batch-1 p50 ms", "note"):
        table.add_column(col)
    for r in report["rows"]:
        ran = "top1" in r
        table.add_row(f"{r['backend']}/{r['device']}", r["precision"], r["status"],
                      f"{r['top1']:.2%}" if ran else "—", f"{r['agreement']:.2%}" if ran else "—",
                      f"{r['max_abs_diff']:.3g}" if ran else "—", f"{r['batch1_ms']:.3f}" if ran else "—",
                      escape(r.get("why") or r.get("detail", "")))
    out.print(table)
    if json_path:
        atomic_write_json(json_path, report)
    out.print(f"[bold]{report['verdict']}[/]")
    if not report["ok"]:
        raise typer.Exit(1)


@app.command()
def info(
    bundle: Annotated[str, typer.Argument(help="bundle directory")],
    public_key: PublicKey = None,
    json_path: Annotated[str | None, typer.Option("--json", help="also write the summary as JSON here ('-': stdout only)")] = None,
) -> None:
    """Verify a bundle (manifest schema and digest, every file's size and sha256, signature) and summarize it."""
    from edgecls.bundle import Bundle

    b = Bundle.open(bundle, public_key=public_key)
    verified = b.verify_all()
    m = b.manifest
    signature = m.get("signature")
    checked = public_key or os.environ.get("EDGECLS_PUBLIC_KEY")
    if json_path:
        acc = m.get("accuracy") or {}
        _emit_json({"schema": "edgecls.info/1", "bundle": bundle, "model": m["model"], "digest": b.digest,
                    "signature": {"key_id": signature["key_id"], "verified": bool(checked)} if signature else None,
                    "classes": m["classes"], "input": m["input"], "preprocess": m["preprocess"], "verified_files": verified,
                    "files": m["files"], "uncovered": b.uncovered(),
                    "accuracy": {split: {f: r["top1"] for f, r in acc.get(split, {}).get("files", {}).items()}
                                 for split in ("validation", "test")}}, json_path)
        if json_path == "-":
            return
    out.print(f"{m['model']}: {len(m['classes'])} classes, input {m['input']['shape']} {m['input']['color']}, "
              f"source {m['source']}")
    out.print(f"manifest digest {b.digest}; " + (
        f"signed by key {signature['key_id']}" + (" (verified)" if checked else " (not checked: pass --public-key)")
        if signature else "unsigned"))
    prep, norm = m["preprocess"], m["preprocess"]["normalization"]
    crop = f"centred {prep['crop_fraction']:.4g} of the short side" if "crop_fraction" in prep else "centre square"
    out.print(f"preprocess: {crop}, {prep['resize']} resize to {m['input']['size']}×{m['input']['size']}, "
              f"{m['input']['color']}, mean {[round(v, 3) for v in norm['mean']]} std {[round(v, 3) for v in norm['std']]} "
              f"(pixel units 0–255, {norm['kind']})" + (", batch fixed at 1" if m["input"]["shape"][0] == 1 else ""))
    uncovered = b.uncovered()
    if uncovered:
        out.print(f"[bold yellow]not covered by the manifest{' or its signature' if signature else ''}, never loaded:[/] "
                  f"{', '.join(uncovered)}")
    table = Table(title=f"{bundle}: {len(verified)} files verified (size + sha256)")
    for col in ("file", "precision", "flavour", "target", "MB", "val top-1 (gate)", "test top-1"):
        table.add_column(col)
    acc = m.get("accuracy") or {}
    val, test = (acc.get(split, {}).get("files", {}) for split in ("validation", "test"))
    for f in b.files():
        cells = [f"{split[f.name]['top1']:.2%}" if f.name in split else "—" for split in (val, test)]
        table.add_row(f.name, f.precision, f.flavour or "—", f.target, f"{f.bytes / 1e6:.2f}", *cells)
    out.print(table)


@app.command()
def keygen(key: Annotated[str, typer.Argument(help="private key file to create; the public key goes to KEY.pub")]) -> None:
    """Make an Ed25519 key pair for signing bundles (the private key stays on the build machine)."""
    from edgecls.signing import generate_key

    private, public = generate_key(key)
    out.print(f"private key {private} (keep it secret), public key {public} (give it to the robots: EDGECLS_PUBLIC_KEY)")


@app.command()
def sign(
    bundle: Annotated[str, typer.Argument(help="bundle directory")],
    key: Annotated[str, typer.Option(help="Ed25519 private key (PEM) made by `edgecls keygen`")],
) -> None:
    """Sign a bundle's manifest; robots given the public key then load only bundles it signed."""
    from edgecls.bundle import sign_bundle

    signature = sign_bundle(bundle, key)
    out.print(f"signed {bundle} with key {signature['key_id']}")


@app.command()
def camera(
    bundle: Annotated[str, typer.Argument(help="bundle directory")],
    source: Annotated[str, typer.Option(help="camera (0, /dev/video0, v4l2:///dev/video0, csi://0 on a Jetson), rtsp/http "
                                             "URL, video file, image directory or GStreamer pipeline")] = "0",
    backend: Annotated[str, typer.Option(help="auto, onnxruntime, tensorrt, torch")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, fp16, int8")] = "auto",
    headless: Annotated[bool, Flag(help="no window (servers, CI, SSH); without a display or a GUI build of "
                                                "OpenCV the loop is headless anyway")] = False,
    serve: Annotated[str | None, typer.Option(help="live web view at HOST:PORT (video, per-stage ms, frame age, FPS); "
                                                   "127.0.0.1:8080 for this machine, 0.0.0.0:8080 for the network")] = None,
    record: Annotated[str | None, typer.Option(help="write the annotated video here (.mp4)")] = None,
    jsonl: Annotated[str | None, typer.Option(help="one JSON record per frame")] = None,
    max_frames: Annotated[int | None, typer.Option(help="stop after N classified frames")] = None,
    replay_test_set: Annotated[str | None, typer.Option(help="stream a labelled test set (e.g. cifar10) as frames")] = None,
    data_dir: DataDir = None,
    frame_size: Annotated[str, typer.Option(help="replayed frame size WxH, or auto: about 640x480, chosen so the model sees "
                                                 "each test image exactly (replay then scores what eval scores)")] = "auto",
    fps: Annotated[float, typer.Option(help="replay rate in frames/s (0: as fast as possible)")] = 0.0,
    summary_json: Annotated[str | None, typer.Option("--json", "--summary-json", help="write the latency summary here "
                                                                                  "(+ latency PNG)")] = None,
    threads: Annotated[int | None, typer.Option(help="host inference threads (default: the backend's batch-1 default; "
                                                      "0: all cores)")] = None,
    warmup_frames: Annotated[int, typer.Option(help="first N frames are classified but left out of the latency figures")] = 10,
    public_key: PublicKey = None,
) -> None:
    """Classify a live camera, video, stream or image directory; print per-stage latency and frame age at exit."""
    from edgecls.runtime.camera import CameraOptions, run_camera
    from edgecls.runtime.classifier import Classifier

    clf = Classifier.load(bundle, backend=backend, precision=precision, threads=threads, public_key=public_key)
    out.print(clf.describe())
    options = CameraOptions(source=source, headless=headless, record=record, jsonl=jsonl, max_frames=max_frames,
                            replay_test_set=replay_test_set, data_dir=data_dir, frame_size=frame_size, fps=fps,
                            summary_json=summary_json, warmup_frames=warmup_frames, serve=serve)
    run_camera(clf, options)


@app.command()
def serve(
    bundle: Annotated[str, typer.Argument(help="bundle directory")],
    host: Annotated[str, typer.Option(help="address to bind; anything but 127.0.0.1/localhost serves the network")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="Triton HTTP/REST port")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="Triton gRPC port")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port (/metrics)")] = 8002,
    max_batch: Annotated[int, typer.Option(help="largest batch Triton's dynamic batcher forms")] = 64,
    queue_delay_us: Annotated[int, typer.Option(help="how long a request may wait for others to batch with, µs")] = 500,
    instances: Annotated[int, typer.Option(help="model instances (one Classifier each) serving in parallel")] = 1,
    backend: Annotated[str, typer.Option(help="auto, onnxruntime, tensorrt")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, fp16, int8")] = "auto",
    threads: Annotated[int | None, typer.Option(help="host inference threads per instance (default: the backend's)")] = None,
    max_request_mb: Annotated[int, typer.Option(help="largest HTTP request taken, MiB (larger: 413)")] = 64,
    max_frame_side: Annotated[int, typer.Option(help="largest frame height or width taken, pixels (larger: 400)")] = 4096,
    public_key: PublicKey = None,
) -> None:
    """Serve a bundle through NVIDIA Triton Inference Server (PyTriton): raw frames or tensors in, labels out."""
    from edgecls.runtime.serve import ServeOptions
    from edgecls.runtime.serve import serve as run_server

    options = ServeOptions(host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, max_batch=max_batch,
                           queue_delay_us=queue_delay_us, instances=instances, backend=backend, precision=precision,
                           threads=threads, max_request_mb=max_request_mb, max_frame_side=max_frame_side)
    if host not in ("127.0.0.1", "localhost", "::1"):
        out.print(f"[bold yellow]serving on {host}: reachable from the network[/] (default is 127.0.0.1)")

    def ready(name, clf) -> None:
        out.print(f"serving {clf.describe()}\n  frames:  http://{host}:{http_port}/v2/models/{name}/infer  "
                  f"(grpc {host}:{grpc_port})\n  tensors: model {name}_tensor\n  ready:   http://{host}:{http_port}/v2/models/{name}/ready"
                  f"\n  metrics: http://{host}:{metrics_port}/metrics\nCtrl-C or SIGTERM stops it.")

    run_server(bundle, options, public_key=public_key, ready=ready)
    out.print("server stopped")


@app.command()
def bench(
    target: Annotated[str, typer.Argument(help="bundle directory (or a zoo model: exported to exports/MODEL first)")],
    backends: Annotated[str, typer.Option("--backend", "--backends", help="comma-separated backends (default: all available)")] = "",
    precisions: Annotated[str, typer.Option("--precision", "--precisions", help="comma-separated precisions")] = "fp32,fp16,int8",
    throughput_batch: Annotated[int, typer.Option(help="batch size of the throughput (img/s) column")] = 64,
    iterations: Annotated[int, typer.Option(help="timed batch-1 calls per row, hot and again paced")] = 300,
    warmup: Annotated[int, typer.Option(help="untimed calls before the hot timing")] = 30,
    pace_ms: Annotated[float, typer.Option(help="spacing of the paced calls (33 ms: a 30 fps camera)")] = 33.0,
    frame_size: Annotated[str, typer.Option(help="camera frame WxH the end-to-end latency starts from")] = "640x480",
    threads: Annotated[int | None, typer.Option(help="host inference threads for every backend (default: each backend's "
                                                      "batch-1 default; 0: all cores)")] = None,
    data_dir: DataDir = None,
    eval_images: Annotated[int | None, typer.Option(help="accuracy on the first N test images (default all)")] = None,
    json_path: Annotated[str | None, typer.Option("--json", help="write rows here (+ .md table and .png plot)")] = None,
    public_key: PublicKey = None,
) -> None:
    """Hot and paced batch-1 latency (end to end and inference), throughput and accuracy for every backend × precision."""
    from edgecls.bench import BenchOptions, run_bench
    from edgecls.runtime.camera import parse_size

    options = BenchOptions(backends=tuple(b for b in backends.split(",") if b), precisions=tuple(precisions.split(",")),
                           throughput_batch=throughput_batch, iterations=iterations, warmup=warmup, pace_ms=pace_ms,
                           frame_size=parse_size(frame_size), threads=threads, data_dir=data_dir, eval_images=eval_images,
                           json_path=json_path, public_key=public_key)
    run_bench(target, options)


# Which extra brings a missing module: the base install is the deploy runtime only.
EXTRAS = {"train": {"torch", "torchvision", "onnx", "onnxconverter_common", "sklearn"}, "modelopt": {"modelopt"},
          "serve": {"pytriton", "tritonclient"}, "cpu": {"onnxruntime", "cv2"}}
FLAVOUR_HINT = (" — or [gpu] on a desktop NVIDIA GPU; on a Jetson keep JetPack's OpenCV and NVIDIA's onnxruntime-gpu "
                "(venv --system-site-packages, the [jetson] extra)")


DISK_ERRORS = {
    errno.ENOSPC: "The disk is full: free space or write elsewhere. Every edgecls file is written atomically, so nothing "
                  "half-written was left under a final name.",
    errno.EDQUOT: "Your disk quota is used up: free space or write elsewhere. Nothing half-written was left under a final name.",
    errno.EACCES: "Permission denied: run as a user who may use that path, or choose another one.",
    errno.EPERM: "Operation not permitted: run as a user who may use that path, or choose another one.",
    errno.EROFS: "That file system is read-only: choose a writable path.",
}


def main() -> None:
    """The console entry point: only here may `train` replace the process (tcmalloc), never under a test runner."""
    global _ENTRY_POINT
    _ENTRY_POINT = True
    try:
        app()
    except EdgeclsError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(exc))}")  # hints such as 'edgecls[serve]' are text
        sys.exit(2)
    except ModuleNotFoundError as exc:
        extra = next((extra for extra, modules in EXTRAS.items() if (exc.name or "").split(".")[0] in modules), None)
        if extra is None:
            raise
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] this command needs {exc.name}, which comes with the "
                                   f"{escape(f'[{extra}]')} extra: pip install {escape(repr(f'edgecls[{extra}]'))}"
                                   + (escape(FLAVOUR_HINT) if extra == "cpu" else ""))
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(f'{exc.strerror}: {exc.filename}')}. "
                                                   f"{escape(DISK_ERRORS[exc.errno])}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
