"""Commands that inspect and secure a bundle: `doctor`, `info`, `keygen`, `sign`."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgecls.cli.app import (
    Flag,
    PublicKey,
    app,
    emit_json,
    out,
)
from edgecls.errors import BundleError


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

    from edgecls.doctor import print_doctor_report, run_doctor
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
    print_doctor_report(report, out)
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
    checked = public_key or os.environ.get("EDGECLS_PUBLIC_KEY")
    if json_path:
        emit_json(_info_summary(b, bundle, verified, bool(checked)), json_path)
        if json_path == "-":
            return
    _print_info(b, bundle, verified, bool(checked))


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


def _info_summary(b, bundle: str, verified: list, checked: bool) -> dict:
    """`edgecls info --json`'s summary."""
    m, raw = b.manifest, b.manifest.raw
    signature, acc = m.signature, m.accuracy or {}
    return {
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
    }


def _print_info(b, bundle: str, verified: list, checked: bool) -> None:
    """`edgecls info`'s summary on the terminal."""
    m = b.manifest
    signature, acc = m.signature, m.accuracy or {}
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
