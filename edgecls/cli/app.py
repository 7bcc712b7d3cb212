"""The command line's frame: the `edgecls` Typer app, its output console, and the helpers every command group
shares (options built from the settings dataclasses, JSON and report printing).

Heavy modules (torch, onnx, cv2) are imported inside the commands, so `edgecls --help` is instant and works on a
runtime-only install. Options are declared once, as fields of the settings dataclasses that check them
(`TrainConfig`, `export.options`, `runtime.options`, `camera.options`, `serving.options`, `measure_options`);
`options_command` builds each command's parameters from those fields.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import sys
import typing
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgecls.console import console
from edgecls.errors import ConfigError
from edgecls.options import PUBLIC_KEY

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
            option = typer.Option(*names, help=help_text, show_default=shown, metavar=_metavar(hint))
            annotation = Annotated[hint, option]
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


def _metavar(hint) -> str:
    """What an option's value looks like in --help, in the user's words rather than Python's (`<str | None>`)."""
    kinds = {a for a in typing.get_args(hint) if a is not type(None)} or {hint}
    origin = {typing.get_origin(k) or k for k in kinds}
    if origin & {list, tuple}:
        return "A,B,…" if str in {a for k in kinds for a in typing.get_args(k)} else "VALUES"
    return "N" if origin <= {int} else "NUMBER" if origin <= {int, float} else "TEXT"


def fields_of(cls: type, settings: dict) -> dict:
    """The entries of `settings` that are fields of `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in settings.items() if k in names}


def parse_model_args(pairs: list[str]) -> dict:
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


def floats_option(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"{flag} takes comma-separated numbers such as 0.485,0.456,0.406, got {text!r}") from exc


def emit_json(obj, path: str) -> None:
    """`--json PATH` writes PATH atomically and says so; `--json -` prints to stdout (for jq and scripts)."""
    if path == "-":
        sys.stdout.write(json.dumps(obj, indent=2) + "\n")
        return
    from edgecls.fileio import atomic_write_json

    atomic_write_json(path, obj)
    console.print(f"wrote {escape(path)}", soft_wrap=True)


def print_report(report: dict, title: str, json_path: str | None = None) -> None:
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
    if "confidence" in report:
        c = report["confidence"]
        out.print(
            f"confidence: expected calibration error {c['ece']:.4f} with the bundle's calibration (temperature "
            f"{c['temperature']:.3g}, top-label beta {', '.join(f'{v:.3g}' for v in c['beta'])}); "
            f"{c['ece_uncalibrated']:.4f} with the plain softmax"
        )
    if "ood" in report:
        o = report["ood"]
        mark = {o.get("score"): " (the bundle's)"}
        scores = ", ".join(
            f"{name}{mark.get(name, '')} AUROC {s['auroc']:.3f} FPR@95%TPR {s['fpr_at_95_tpr']:.3f}"
            for name, s in o["scores"].items()
        )
        called = (
            f"; the bundle's threshold calls {o['unknown_called_unknown']:.1%} of them unknown and "
            f"{o['known_called_unknown']:.1%} of the test set"
            if "threshold" in o
            else "; the bundle has no unknown threshold (re-export it)"
        )
        out.print(f"unknown vs {o['dataset']} ({o['images']} images): {scores}{called}")
    if "corruptions" in report:
        c = report["corruptions"]
        worst = min(c["by_corruption"], key=lambda name: c["by_corruption"][name]["mean"])
        out.print(
            f"camera conditions ({c['suite']}, {len(c['by_corruption'])} corruptions × severities 1-5, first "
            f"{c['images']:,} test images): mean top-1 {c['mean_top1']:.2%} (clean {c['clean_top1']:.2%}); worst "
            f"{worst} {c['by_corruption'][worst]['mean']:.2%}"
        )
    if json_path:
        stem = Path(json_path).with_suffix("")
        kinds = ["confusion", "examples"] + (["reliability"] if "confidence" in report else [])
        kinds += ["corruptions"] if "corruptions" in report else []
        pngs = ", ".join(f"{stem}.{kind}.png" for kind in kinds)
        out.print(f"wrote {json_path}, {pngs}")


_entry = {"point": False}  # set by main(): `edgecls ...` or `python -m edgecls ...`, not CliRunner


def mark_entry_point() -> None:
    _entry["point"] = True


def entry_point() -> bool:
    """Whether this process is the `edgecls` console entry point (`main`), not a test runner calling `app`."""
    return _entry["point"]
