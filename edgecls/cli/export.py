"""Commands that make deployable files: `formats`, `export`, `build-engine`."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgecls.cli.app import (
    app,
    fields_of,
    floats_option,
    options_command,
    out,
    parse_model_args,
)
from edgecls.export.options import ExportOptions, ForeignOptions


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
        "model_args": (list[str], parse_model_args),
        "mean": (str | None, functools.partial(floats_option, flag="--mean")),
        "std": (str | None, functools.partial(floats_option, flag="--std")),
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
        from edgecls.serving.repository import write_triton_repository

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
