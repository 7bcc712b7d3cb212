"""The manifest (`edgecls.json`): a bundle's typed, sealed description, checked in full on every load.

The records below are the format's one declaration. `read_manifest` checks parsed JSON against them (a closed
format: missing, unknown and mistyped fields are refused, naming the field) and then what types cannot say:
distinct class names, an input shape that agrees with its size, plain file names, sha256 digests, a positive std
and the digest of the content. `docs/manifest.schema.json` is written from the same records
(`python tools/write_manifest_schema.py`) for tools outside edgecls.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgecls.errors import BundleError, IntegrityError
from edgecls.imaging import COLORS, ImageInput, Policy
from edgecls.jsonrecord import choices, doc, json_schema, read_record

MANIFEST = "edgecls.json"
FORMAT_VERSION = 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class InputSpec:
    """The graph's input: name, shape (batch -1, or 1 for a fixed-batch graph), layout and dtype, and the image."""

    name: str
    shape: tuple[int, ...]
    layout: str
    dtype: str
    size: int
    channels: int = field(metadata=choices((1, 3)))
    color: str = field(metadata=choices(COLORS, "channel order of a 3-channel input"))

    @property
    def image(self) -> ImageInput:
        return ImageInput(self.size, self.channels, self.color)


@dataclass(frozen=True)
class FileRecord:
    """One file of the bundle, checked by size and sha256 before it is loaded."""

    format: str = field(metadata=doc("onnx, pytorch, numpy, ..."))
    precision: str = field(metadata=doc("fp32, fp16 or int8"))
    target: str = field(metadata=doc("where the file runs best: any, onnxruntime, tensorrt, ..."))
    flavour: str = field(metadata=doc("which of several graphs of one precision, e.g. u8s8; empty for the only one"))
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest: what the model takes and answers, its files, and how it was made and measured."""

    format_version: int
    digest: str = field(metadata=doc("sha256 of the canonical JSON of every other field but `signature`"))
    model: str
    classes: tuple[str, ...]
    files: dict[str, FileRecord]
    input: InputSpec
    preprocess: Policy
    dataset: str | None = field(default=None, metadata=doc("the dataset the accuracy figures come from"))
    source: str | None = field(default=None, metadata=doc("where the model came from, with its sha256"))
    output: dict | None = field(
        default=None,
        metadata=doc(
            "the logits output, and `features` (each block's channel means) where the unknown score reads them"
        ),
    )
    parity: dict | None = field(default=None, metadata=doc("the ONNX graph against PyTorch on test images"))
    accuracy: dict | None = field(default=None, metadata=doc("each graph's validation and test accuracy"))
    calibration: dict | None = None
    confidence: dict | None = field(
        default=None,
        metadata=doc(
            "per graph: the temperature, the unknown score's standardization and threshold fitted on the validation "
            "split, and the ECE"
        ),
    )
    tools: dict | None = field(default=None, metadata=doc("versions of the tools that made the bundle"))
    export_host: dict | None = None
    engines: list | None = field(default=None, metadata=doc("TensorRT engines built on a target, by sha256"))
    signature: dict | None = field(default=None, metadata=doc("Ed25519 signature of `digest` (edgecls sign)"))
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, metadata={"json": False})


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest without `digest` and `signature`, as sorted, compact, NaN-free JSON."""
    content = {k: v for k, v in manifest.items() if k not in ("digest", "signature")}
    try:
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise BundleError(f"manifest holds a non-finite number ({exc}); re-run `edgecls export`") from exc
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def seal(manifest: dict) -> dict:
    """The manifest with its digest, ready to write (any old signature is dropped: it signed other content)."""
    content = {
        "format_version": FORMAT_VERSION,
        **{k: v for k, v in manifest.items() if k not in ("format_version", "digest", "signature")},
    }
    return {**content, "digest": manifest_digest(content)}


def read_manifest(obj: Any, path: Path) -> Manifest:
    """Parsed `edgecls.json` → a `Manifest`, or a `BundleError` (`IntegrityError` for a digest mismatch) naming the
    problem and the fix."""

    def fail(problem: str) -> BundleError:
        return BundleError(
            f"{path}: {problem}. The manifest is damaged or was edited by hand; re-run `edgecls export` "
            "or copy the bundle again."
        )

    version = obj.get("format_version") if isinstance(obj, dict) else None
    if isinstance(version, int) and version != FORMAT_VERSION:
        if version > FORMAT_VERSION:
            raise BundleError(f"{path} has format {version}, this edgecls reads {FORMAT_VERSION}: upgrade edgecls")
        raise BundleError(f"{path} has format {version} (no manifest digest); re-export it with this edgecls")
    manifest = read_record(Manifest, obj, fail)
    _check_content(manifest, fail)
    recorded, actual = manifest.digest, manifest_digest(obj)
    if recorded != actual:
        raise IntegrityError(
            f"{path}: the manifest's content does not match its digest ({recorded[:19]}… recorded, "
            f"{actual[:19]}… computed): it was edited after export. Re-run `edgecls export` or copy "
            "the bundle again."
        )
    return replace(manifest, raw=obj)


def _check_content(manifest: Manifest, fail) -> None:
    classes, spec, norm = manifest.classes, manifest.input, manifest.preprocess.normalization
    if not classes or not all(classes) or len(set(classes)) != len(classes):
        raise fail("classes must be a non-empty list of distinct names")
    if spec.size < 1:
        raise fail(f"input.size must be ≥ 1, got {spec.size}")
    if spec.shape[1:] != (spec.channels, spec.size, spec.size) or spec.shape[0] not in (-1, 1):
        raise fail(
            f"input.shape {list(spec.shape)} disagrees with its size and channels (batch -1, or 1 for a "
            "fixed-batch graph)"
        )
    fraction = manifest.preprocess.crop_fraction
    if not 0 < fraction <= 1:
        raise fail(f"preprocess.crop_fraction must be a number in (0, 1], got {fraction!r}")
    for key, values in (("mean", norm.mean), ("std", norm.std)):
        if len(values) != spec.channels:
            raise fail(f"preprocess.normalization.{key} must be {spec.channels} finite numbers, got {list(values)}")
    if min(norm.std) <= 0:
        raise fail(f"preprocess.normalization.std must be > 0, got {list(norm.std)}")
    for name, entry in manifest.files.items():
        if not _NAME.match(name) or name == MANIFEST:
            raise fail(f"file name {name!r} is not a plain file name inside the bundle")
        if not _SHA256.match(entry.sha256) or entry.bytes < 0:
            raise fail(f"files[{name!r}] needs a 64-digit lowercase hex sha256 and a size ≥ 0")


def manifest_schema() -> dict:
    """The manifest's JSON Schema, as written to docs/manifest.schema.json."""
    return json_schema(
        Manifest,
        title="edgecls bundle manifest (edgecls.json), format 2",
        description="Written by `edgecls export`; every bundle file is listed with its sha256. `digest` seals the "
        "content (sha256 of the sorted, compact JSON without `digest` and `signature`).",
    )
