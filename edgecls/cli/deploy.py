"""Commands that run a bundle: `camera`, `serve`, `bench`."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Annotated

import typer

from edgecls.camera.options import CameraOptions
from edgecls.cli.app import (
    PublicKey,
    app,
    fields_of,
    options_command,
    out,
)
from edgecls.measure_options import BenchOptions
from edgecls.runtime.options import LoadOptions
from edgecls.serving.options import ServeOptions


@app.command()
@options_command(
    CameraOptions,
    LoadOptions,
    converters={"outputs": (list[str], tuple)},
    extra={"bundle": (Annotated[str, typer.Argument(help="bundle directory")], inspect.Parameter.empty)},
)
def camera(ctx: typer.Context, settings: dict) -> None:
    """Classify a live camera, video, stream or image directory; print per-stage latency and frame age at exit."""
    options = CameraOptions(**fields_of(CameraOptions, settings))
    load = LoadOptions(**fields_of(LoadOptions, settings))
    from edgecls.camera.loop import run_camera
    from edgecls.runtime import Classifier
    from edgecls.train import torch_backend  # noqa: F401  (registers --backend torch)

    clf = Classifier.load(settings["bundle"], **dataclasses.asdict(load))
    out.print(clf.describe())
    run_camera(clf, options, replay_set(options, clf.bundle))


def replay_set(options: CameraOptions, bundle):
    """The test split `--replay-test-set` streams, fitted to the model, under `--corruption` if given (the same
    pixels `eval --corruptions` scores); None without --replay-test-set."""
    if not options.replay_test_set:
        return None
    from edgecls.data import load_for_model

    replay = load_for_model(options.replay_test_set, "test", options.data_dir, bundle.input, bundle.preprocess)
    if options.corruption:
        from edgecls.corruptions import corrupt, parse_corruption

        name, severity = parse_corruption(options.corruption)
        replay = dataclasses.replace(replay, images=corrupt(replay.images, name, severity))
    return replay


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
    from edgecls.serving.serve import serve as run_server

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
