"""The `edgecls` command line: every command parses its options and calls one library function.

Heavy modules (torch, onnx, cv2) are imported inside the commands, so `edgecls --help` is instant and
works on a runtime-only install. Options are declared once, as fields of the settings dataclasses that check them
(`TrainConfig`, `export.options`, `runtime.options`, `measure_options`); `options_command` builds each command's
parameters from those fields.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import inspect
import json
import os
import sys
import typing
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgecls.console import console
from edgecls.errors import BundleError, ConfigError, EdgeclsError
from edgecls.export.options import ExportOptions, ForeignOptions
from edgecls.measure_options import BaselineOptions, BenchOptions, EvalOptions
from edgecls.options import PUBLIC_KEY
from edgecls.runtime.options import CameraOptions, LoadOptions, ServeOptions
from edgecls.train.config import TrainConfig

app = typer.Typer(
    help="edgecls — train CIFAR-style classifiers, export them to ONNX FP32/FP16/INT8 and TensorRT, and run them "
    "on a camera.\n\nA tour: `edgecls models` lists the zoo · `edgecls train mobilenet_mod` trains · `edgecls eval` "
    "reports accuracy · `edgecls export mobilenet_mod --int8` writes a deployable bundle · `edgecls build-engine` "
    "makes TensorRT engines on the target · `edgecls camera BUNDLE --source 0` classifies live video · "
    "`edgecls bench BUNDLE` compares backends and precisions in one table · `edgecls serve BUNDLE` serves a fleet "
    "through Triton.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(width=None if sys.stdout.isatty() else 160)


@app.callback()
def _everywhere(
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            metavar="",
            envvar="EDGECLS_QUIET",
            help="print nothing but errors (for scripts: results go to --json and the files written)",
        ),
    ] = False,
) -> None:
    out.quiet = console.quiet = quiet


def Flag(*names: str, **kwargs):  # noqa: N802 (used like typer.Option)
    """A boolean option shown as the flag it is (typer's rich help would print a `<bool>` value after it)."""
    return typer.Option(*names, metavar="", **kwargs)


PublicKey = Annotated[str | None, typer.Option(help=PUBLIC_KEY["help"])]


def options_command(
    *classes: type,
    arguments: tuple[str, ...] = (),
    converters: dict | None = None,
    extra: dict | None = None,
):
    """Decorate `fn(ctx, settings)` into a command whose options are the fields of `classes` (`edgecls.options.option`
    metadata: help, flag, choices): each option declared once, on the dataclass that validates it. `converters` maps
    a field to (the type the command line takes, a function from that to the field's value; the dataclass's default
    when the option is not given); `extra` adds parameters of the command's own, {name: (annotation, default)},
    ahead of the rest.

    A small helper rather than tyro or cyclopts: both would replace typer for every command (its rich help, the
    shared option types, CliRunner tests), for one thing typer lacks: parameters from a dataclass."""
    converters, extra = converters or {}, extra or {}
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD

    def parameter(f: dataclasses.Field, hint) -> inspect.Parameter:
        meta = f.metadata
        shown = True
        if f.name in converters:
            hint = converters[f.name][0]
            shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) and f.default else False
            default = [] if typing.get_origin(hint) is list else None
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            default = inspect.Parameter.empty if default is dataclasses.MISSING else default
        help_text = meta["help"] + (f": {', '.join(meta['choices'])}" if meta["choices"] else "")
        names = (meta["flag"],) if isinstance(meta["flag"], str) else meta["flag"] or ()
        if f.name in arguments:
            annotation = Annotated[hint, typer.Argument(help=help_text)]
        elif hint is bool:
            annotation = Annotated[hint, Flag(*names, help=help_text)]
        else:
            annotation = Annotated[hint, typer.Option(*names, help=help_text, show_default=shown)]
        return inspect.Parameter(f.name, keyword, default=default, annotation=annotation)

    def decorate(fn):
        params = [inspect.Parameter("ctx", keyword, annotation=typer.Context)]
        params += [inspect.Parameter(name, keyword, default=d, annotation=a) for name, (a, d) in extra.items()]
        for cls in classes:
            hints = typing.get_type_hints(cls)
            params += [parameter(f, hints[f.name]) for f in dataclasses.fields(cls) if f.metadata.get("cli", False)]

        @functools.wraps(fn)
        def command(ctx: typer.Context, **values):
            for name, (_, convert) in converters.items():
                if values[name] is None:
                    del values[name]  # the dataclass's default
                else:
                    values[name] = convert(values[name])
            return fn(ctx, values)

        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def fields_of(cls: type, settings: dict) -> dict:
    """The entries of `settings` that are fields of `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in settings.items() if k in names}


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
    cpus = set()
    entries = []
    for name, info in load_catalog().items():
        card = model_card(name)
        acc = f"{card.test_top1:.2%}" if card else "—"
        latency = (card.export or {}).get("latency") if card else None
        ms = "—"
        if latency:
            rows = latency["rows"]
            ms = " / ".join(f"{rows[p]['paced_end_to_end_ms_p50']:.2f}" if p in rows else "—" for p in ("fp32", "int8"))
            cpus.add(f"{latency['cpu']}, {latency['logical_cores']} cores, onnxruntime {latency['onnxruntime']}")
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
        if cpus:
            out.print(f"latency measured on: {'; '.join(sorted(cpus))}")
    if json_path:
        _emit_json({"schema": "edgecls.models/1", "models": entries}, json_path)


@app.command()
@options_command(
    TrainConfig,
    arguments=("model",),
    converters={"model_kwargs": (list[str], _parse_model_args)},
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

    if _ENTRY_POINT and pick_device(config.device).type == "cpu":
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
    report = evaluate_classifier(classifier, data, out_json=options.json_path, header=header)
    _print_report(report, f"{classifier.describe()} on {data.name}", options.json_path)


def _evaluate_checkpoint(options: EvalOptions, load: LoadOptions) -> None:
    from edgecls.data import load_for_model
    from edgecls.evaluate import evaluate_model, report_header
    from edgecls.export.sources import checkpoint_source
    from edgecls.train.loop import pick_device

    if (load.backend, load.precision, load.threads) != ("auto", "auto", None):
        raise ConfigError("--backend, --precision and --threads apply to bundles: a checkpoint runs in PyTorch FP32")
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
    _print_report(report, f"{src.name} ({src.description}) on {data.name}{views}", options.json_path)


def _emit_json(obj, path: str) -> None:
    """`--json PATH` writes PATH atomically and says so; `--json -` prints to stdout (for jq and scripts)."""
    if path == "-":
        sys.stdout.write(json.dumps(obj, indent=2) + "\n")
        return
    from edgecls.fileio import atomic_write_json

    atomic_write_json(path, obj)
    console.print(f"wrote {escape(path)}", soft_wrap=True)


def _print_report(report: dict, title: str, json_path: str | None = None) -> None:
    table = Table(title=title)
    for col in ("class", "precision", "recall", "F1", "BCR", "support"):
        table.add_column(col)
    for row in report["per_class"]:
        table.add_row(
            row["class"],
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            f"{row['bcr']:.3f}",
            str(row["support"]),
        )
    m = report["macro"]
    table.add_row(
        "macro",
        f"{m['precision']:.3f}",
        f"{m['recall']:.3f}",
        f"{m['f1']:.3f}",
        f"{m['bcr']:.3f}",
        str(report["samples"]),
        style="bold",
    )
    out.print(table)
    out.print(
        f"top-1 {report['top1']:.2%}   top-5 {report['top5']:.2%}   best: {', '.join(report['best'][:3])}   "
        f"worst: {', '.join(report['worst'][:3])}"
    )
    if json_path:
        stem = Path(json_path).with_suffix("")
        out.print(f"wrote {json_path}, {stem}.confusion.png, {stem}.examples.png")


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
    _print_report(report, title)


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
@options_command(
    ExportOptions,
    ForeignOptions,
    converters={
        "exclude_nodes": (list[str], tuple),
        "model_args": (list[str], _parse_model_args),
        "mean": (str | None, functools.partial(_floats, flag="--mean")),
        "std": (str | None, functools.partial(_floats, flag="--std")),
    },
    extra={
        "source": (
            Annotated[
                str,
                typer.Argument(
                    help="zoo model with bundled weights (e.g. mobilenet_mod), a checkpoint .pt or run directory, "
                    "your own module (file.py:NAME, package.module:NAME, torchvision:NAME, with --weights) or an "
                    ".onnx file"
                ),
            ],
            inspect.Parameter.empty,
        ),
        "triton": (
            Annotated[str | None, typer.Option(help="also write a Triton Inference Server model repository here")],
            None,
        ),
    },
)
def export(ctx: typer.Context, settings: dict) -> None:
    """Write a deployable bundle: ONNX FP32 (+FP16, +INT8 U8S8/S8S8), manifest, TensorRT engines where possible."""
    from edgecls.zoo.catalog import check_bare_name

    check_bare_name(settings["source"])
    options = ExportOptions(
        **fields_of(ExportOptions, settings), foreign=ForeignOptions(**fields_of(ForeignOptions, settings))
    )
    from edgecls.export.pipeline import export_bundle

    manifest = export_bundle(settings["source"], options)
    if settings["triton"]:
        from edgecls.export.triton import write_triton_repository

        bundle_dir = options.out or f"exports/{manifest['model']}"
        written = write_triton_repository(bundle_dir, settings["triton"])
        out.print(f"Triton model repository: {', '.join(str(p) for p in written)}")


@app.command("build-engine")
def build_engine(
    bundle: Annotated[str, typer.Argument(help="bundle directory written by `edgecls export`")],
    precision: Annotated[
        list[str] | None,
        typer.Option(
            help="fp32, fp16 and/or int8 (repeatable); default: fp16 and int8 where this TensorRT builds them"
        ),
    ] = None,
    max_batch: Annotated[int, typer.Option(help="largest batch the engine's optimization profile accepts")] = 64,
    device: Annotated[int, typer.Option(help="CUDA device index to build for (engines are tuned to one GPU)")] = 0,
) -> None:
    """Build TensorRT engines for this GPU from a bundle's ONNX files (run it on the target device)."""
    from edgecls.runtime.engines import build_bundle_engines

    def skipped(name: str, why: str) -> None:
        out.print(f"[yellow]no {name} engine:[/] {escape(why)}")

    for engine in build_bundle_engines(
        bundle, tuple(precision) if precision else None, max_batch=max_batch, device_index=device, on_skip=skipped
    ):
        out.print(
            f"built {engine['precision']} engine ({engine['mode']}) for {engine['gpu']} "
            f"sm_{engine['compute_capability']}, "
            f"TensorRT {engine['tensorrt']}: {engine['file']} in the engine cache, where the runtime looks"
        )


@app.command()
def doctor(
    bundle: Annotated[str, typer.Argument(help="bundle directory (copied to the target as it is)")],
    iterations: Annotated[int, typer.Option(help="batch-1 calls timed per row")] = 100,
    json_path: Annotated[str | None, typer.Option("--json", help="write the full report here")] = None,
    first_run: Annotated[
        bool,
        Flag(
            "--first-run",
            help="every check a first Jetson or GPU desktop should run "
            "(engines, batch sizes, threads, memory, providers, "
            "adapters, cameras): PASS/FAIL/WARN/SKIP and a JSON report "
            "(default edgecls-first-run.json) to send back",
        ),
    ] = False,
) -> None:
    """On the target: what is installed, and whether every backend here gives the bundle's answers on its own sample."""
    from rich.markup import escape

    from edgecls.doctor import run_doctor
    from edgecls.fileio import atomic_write_json

    if first_run:
        from edgecls.first_run import run_first_run

        colours = {"PASS": "green", "FAIL": "bold red", "WARN": "yellow", "SKIP": "dim"}
        report = run_first_run(
            bundle,
            progress=lambda c: out.print(f"[{colours[c.status]}]{c.status}[/] {escape(c.name)}: {escape(c.detail)}"),
        )
        path = json_path or "edgecls-first-run.json"
        atomic_write_json(path, report)
        out.print(
            f"[bold]{' · '.join(f'{n} {s}' for s, n in report['counts'].items())}[/]; report written to {path}: "
            "send it back with the bundle's edgecls.json"
        )
        if not report["ok"]:
            raise typer.Exit(1)
        return

    report = run_doctor(bundle, iterations)
    env = report["environment"]
    out.print(
        f"[bold]{report['model']}[/] — {env['cpu']} ({env['logical_cores']} cores, INT8 dot product: "
        f"{env['int8_dot_product']}), GPUs: {', '.join(env['gpus']) or 'none'}"
    )
    out.print(
        f"TensorRT {env['tensorrt'] or 'not installed'}; CUDA API {env['cuda_api'] or 'none'}, "
        f"{env['cuda_devices']} device(s){' (' + env['cuda_problem'] + ')' if env['cuda_problem'] else ''}; "
        + (
            f"ONNX Runtime {env['versions']['onnxruntime']} providers {', '.join(env['onnxruntime_providers'])}; "
            if env["onnxruntime_providers"]
            else "ONNX Runtime not installed; "
        )
        + f"cameras: {', '.join(env['cameras']) or 'none'}"
    )
    io = env["video_io"]
    out.print(
        f"OpenCV {io['opencv']} ({', '.join(env['opencv_packages']) or io['module']}), GStreamer "
        f"{'yes' if io['gstreamer'] else 'no'}; sources it opens: "
        + "; ".join(f"{kind} {escape(answer)}" for kind, answer in env["video_sources"].items())
    )
    for warning in env["warnings"]:
        out.print(f"[bold yellow]WARN[/] {escape(warning)}")
    table = Table(
        title=f"{report['sample']['images']} labelled images carried by the bundle, "
        f"against {report['reference']['kind']}"
    )
    for col in ("backend", "precision", "status", "top-1", "agreement", "max |Δ logit|", "batch-1 p50 ms", "note"):
        table.add_column(col)
    for r in report["rows"]:
        ran = "top1" in r
        table.add_row(
            f"{r['backend']}/{r['device']}",
            r["precision"],
            r["status"],
            f"{r['top1']:.2%}" if ran else "—",
            f"{r['agreement']:.2%}" if ran else "—",
            f"{r['max_abs_diff']:.3g}" if ran else "—",
            f"{r['batch1_ms']:.3f}" if ran else "—",
            escape(r.get("why") or r.get("detail", "")),
        )
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
    json_path: Annotated[
        str | None, typer.Option("--json", help="also write the summary as JSON here ('-': stdout only)")
    ] = None,
) -> None:
    """Verify a bundle (manifest schema and digest, every file's size and sha256, signature) and summarize it."""
    from edgecls.bundle import Bundle

    b = Bundle.open(bundle, public_key=public_key)
    verified = b.verify_all()
    from edgecls.runtime.backends.onnxruntime import graph_geometry_problems

    problems = graph_geometry_problems(b)
    if problems:
        raise BundleError("; ".join(problems))
    if problems is None and json_path != "-":
        out.print("[dim]graph inputs not compared with the manifest: ONNX Runtime is not installed here[/]")
    m, raw = b.manifest, b.manifest.raw
    signature, acc = m.signature, m.accuracy or {}
    checked = public_key or os.environ.get("EDGECLS_PUBLIC_KEY")
    if json_path:
        _emit_json(
            {
                "schema": "edgecls.info/1",
                "bundle": bundle,
                "model": m.model,
                "digest": b.digest,
                "signature": {"key_id": signature["key_id"], "verified": bool(checked)} if signature else None,
                "classes": raw["classes"],
                "input": raw["input"],
                "preprocess": raw["preprocess"],
                "verified_files": verified,
                "files": raw["files"],
                "uncovered": b.uncovered(),
                "accuracy": {
                    split: {f: r["top1"] for f, r in acc.get(split, {}).get("files", {}).items()}
                    for split in ("validation", "test")
                },
            },
            json_path,
        )
        if json_path == "-":
            return
    out.print(f"{m.model}: {len(m.classes)} classes, input {list(m.input.shape)} {m.input.color}, source {m.source}")
    out.print(
        f"manifest digest {b.digest}; "
        + (
            f"signed by key {signature['key_id']}" + (" (verified)" if checked else " (not checked: pass --public-key)")
            if signature
            else "unsigned"
        )
    )
    prep, norm, spec = m.preprocess, m.preprocess.normalization, m.input
    crop = f"centred {prep.crop_fraction:.4g} of the short side" if prep.crop_fraction != 1 else "centre square"
    out.print(
        f"preprocess: {crop}, {prep.resize} resize to {spec.size}×{spec.size}, {spec.color}, "
        f"mean {[round(v, 3) for v in norm.mean]} std {[round(v, 3) for v in norm.std]} "
        f"(pixel units 0–255, {norm.kind})" + (", batch fixed at 1" if spec.shape[0] == 1 else "")
    )
    uncovered = b.uncovered()
    if uncovered:
        out.print(
            f"[bold yellow]not covered by the manifest{' or its signature' if signature else ''}, never loaded:[/] "
            f"{', '.join(uncovered)}"
        )
    table = Table(title=f"{bundle}: {len(verified)} files verified (size + sha256)")
    for col in ("file", "precision", "flavour", "target", "MB", "val top-1 (gate)", "test top-1"):
        table.add_column(col)
    val, test = (acc.get(split, {}).get("files", {}) for split in ("validation", "test"))
    for f in b.files():
        cells = [f"{split[f.name]['top1']:.2%}" if f.name in split else "—" for split in (val, test)]
        table.add_row(f.name, f.precision, f.flavour or "—", f.target, f"{f.bytes / 1e6:.2f}", *cells)
    out.print(table)


@app.command()
def keygen(
    key: Annotated[str, typer.Argument(help="private key file to create; the public key goes to KEY.pub")],
) -> None:
    """Make an Ed25519 key pair for signing bundles (the private key stays on the build machine)."""
    from edgecls.signing import generate_key

    private, public = generate_key(key)
    out.print(
        f"private key {private} (keep it secret), public key {public} (give it to the robots: EDGECLS_PUBLIC_KEY)"
    )


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
@options_command(
    CameraOptions,
    LoadOptions,
    extra={"bundle": (Annotated[str, typer.Argument(help="bundle directory")], inspect.Parameter.empty)},
)
def camera(ctx: typer.Context, settings: dict) -> None:
    """Classify a live camera, video, stream or image directory; print per-stage latency and frame age at exit."""
    options = CameraOptions(**fields_of(CameraOptions, settings))
    load = LoadOptions(**fields_of(LoadOptions, settings))
    from edgecls.runtime import Classifier
    from edgecls.runtime.camera import run_camera

    clf = Classifier.load(settings["bundle"], **dataclasses.asdict(load))
    out.print(clf.describe())
    run_camera(clf, options)


@app.command()
@options_command(
    ServeOptions,
    extra={
        "bundle": (Annotated[str, typer.Argument(help="bundle directory")], inspect.Parameter.empty),
        "public_key": (PublicKey, None),
    },
)
def serve(ctx: typer.Context, settings: dict) -> None:
    """Serve a bundle through NVIDIA Triton Inference Server: raw frames or tensors in, labels out."""
    options = ServeOptions(**fields_of(ServeOptions, settings))
    from edgecls.runtime.serve import serve as run_server

    host, http = options.host, options.http_port
    if options.network:
        out.print(f"[bold yellow]serving on {host}: reachable from the network[/] (default is 127.0.0.1)")

    def ready(name, clf) -> None:
        out.print(
            f"serving {clf.describe()}\n  frames:  http://{host}:{http}/v2/models/{name}/infer  "
            f"(grpc {host}:{options.grpc_port})\n  tensors: model {name}_tensor\n"
            f"  ready:   http://{host}:{http}/v2/models/{name}/ready\n"
            f"  metrics: http://{host}:{options.metrics_port}/metrics\nCtrl-C or SIGTERM stops it."
        )

    run_server(settings["bundle"], options, public_key=settings["public_key"], ready=ready)
    out.print("server stopped")


@app.command()
@options_command(
    BenchOptions,
    converters={
        "backends": (str | None, lambda text: tuple(b for b in text.split(",") if b)),
        "precisions": (str | None, lambda text: tuple(text.split(","))),
    },
    extra={
        "target": (
            Annotated[str, typer.Argument(help="bundle directory (or a zoo model: exported to exports/MODEL first)")],
            inspect.Parameter.empty,
        )
    },
)
def bench(ctx: typer.Context, settings: dict) -> None:
    """Hot and paced batch-1 latency (end to end and inference), throughput and accuracy for every backend ×
    precision."""
    options = BenchOptions(**fields_of(BenchOptions, settings))
    from edgecls.bench import run_bench

    run_bench(settings["target"], options)


# Which extra brings a missing module: the base install is the deploy runtime only.
EXTRAS = {
    "train": {"torch", "torchvision", "onnx", "onnxconverter_common", "sklearn"},
    "modelopt": {"modelopt"},
    "serve": {"pytriton", "tritonclient"},
    "cpu": {"onnxruntime", "cv2"},
}
FLAVOUR_HINT = (
    " — or [gpu] on a desktop NVIDIA GPU; on a Jetson keep JetPack's OpenCV and NVIDIA's onnxruntime-gpu "
    "(venv --system-site-packages, the [jetson] extra)"
)


DISK_ERRORS = {
    errno.ENOSPC: (
        "The disk is full: free space or write elsewhere. Every edgecls file is written atomically, so nothing "
        "half-written was left under a final name."
    ),
    errno.EDQUOT: (
        "Your disk quota is used up: free space or write elsewhere. Nothing half-written was left under a final name."
    ),
    errno.EACCES: "Permission denied: run as a user who may use that path, or choose another one.",
    errno.EPERM: "Operation not permitted: run as a user who may use that path, or choose another one.",
    errno.EROFS: "That file system is read-only: choose a writable path.",
}


def _print_error(markup: str) -> None:
    """One line on stderr, never wrapped by rich (a log or a test reads the message whole), even under --quiet."""
    console.quiet = False
    console.print(f"[bold red]error:[/] {markup}", soft_wrap=True)


def numpy_abi_mismatch(exc: ImportError) -> str | None:
    """The one-line cause and fix when a compiled module (JetPack's or Debian's OpenCV, TensorRT's bindings) was built
    against numpy 1.x and the venv holds numpy 2: the import fails deep inside that module with numpy's own words."""
    text = f"{exc} {exc.__cause__ or ''} {exc.__context__ or ''}"
    if "numpy.core.multiarray failed to import" not in text and "compiled using NumPy 1.x" not in text:
        return None
    import numpy

    return (
        f"a compiled module (typically the system's OpenCV or TensorRT, built against numpy 1.x) cannot load beside "
        f"numpy {numpy.__version__} from {Path(numpy.__file__).parent}: in this venv run `pip uninstall numpy` "
        "(the system's numpy is then used, as JetPack's modules need) or `pip install 'numpy<2'`, then retry"
    )


def main() -> None:
    """The console entry point: only here may `train` replace the process (tcmalloc), never under a test runner."""
    global _ENTRY_POINT
    _ENTRY_POINT = True
    try:
        app()
    except EdgeclsError as exc:
        _print_error(escape(str(exc)))  # hints such as 'edgecls[serve]' are text
        sys.exit(2)
    except ModuleNotFoundError as exc:
        extra = next((extra for extra, modules in EXTRAS.items() if (exc.name or "").split(".")[0] in modules), None)
        if extra is None:
            raise
        _print_error(
            f"this command needs {exc.name}, which comes with the {escape(f'[{extra}]')} extra: "
            f"pip install {escape(repr(f'edgecls[{extra}]'))}" + (escape(FLAVOUR_HINT) if extra == "cpu" else "")
        )
        sys.exit(2)
    except ImportError as exc:
        reason = numpy_abi_mismatch(exc)
        if reason is None:
            raise
        _print_error(escape(reason))
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        where = f": {exc.filename}" if exc.filename else " while writing"  # a write on an open file names none
        _print_error(f"{escape(f'{exc.strerror or os.strerror(exc.errno)}{where}')}. {escape(DISK_ERRORS[exc.errno])}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
