"""The bundle: the directory `edgecls export` writes and the runtime trusts (no torch needed here).

`edgecls.json` is the manifest, a closed format checked on every load:
- every field the runtime reads is present and typed, and no field it does not know is accepted;
- file names are plain names inside the bundle (no paths), and each file's size and sha256 are checked
  before the file is loaded;
- `digest` is the sha256 of the manifest's own canonical content, so an edited class name, mean or file
  entry is refused, not silently obeyed;
- `signature` (optional, `edgecls sign`) is an Ed25519 signature of that digest: with a public key
  (`public_key=` or $EDGECLS_PUBLIC_KEY) unsigned or wrongly signed bundles are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecls.errors import BundleError, IntegrityError
from edgecls.fileio import atomic_write_json, sha256_file
from edgecls.imaging import COLORS, CROPS, RESIZES

MANIFEST = "edgecls.json"
FORMAT_VERSION = 2
PUBLIC_KEY_ENV = "EDGECLS_PUBLIC_KEY"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_OPTIONAL_SECTIONS = ("dataset", "source", "output", "parity", "accuracy", "calibration", "tools", "export_host",
                      "engines", "signature")
_SCHEMA: dict[str, Any] = {
    "format_version": int, "digest": str, "model": str, "classes": list, "files": dict,
    "input": {"name": str, "shape": list, "layout": str, "dtype": str, "size": int, "channels": int, "color": str},
    "preprocess": {"crop": str, "resize": str, "normalization": {"kind": str, "mean": list, "std": list}},
}
_OPTIONAL_FIELDS = {"preprocess": ("crop_fraction",)}  # absent: 1.0, the whole centre square
_FILE_SCHEMA = {"format": str, "precision": str, "target": str, "flavour": str, "sha256": str, "bytes": int}


@dataclass(frozen=True)
class FileEntry:
    name: str
    format: str
    precision: str
    target: str
    flavour: str
    sha256: str
    bytes: int


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest without `digest` and `signature`, as sorted, compact, NaN-free JSON."""
    content = {k: v for k, v in manifest.items() if k not in ("digest", "signature")}
    try:
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise BundleError(f"manifest holds a non-finite number ({exc}); re-run `edgecls export`") from exc
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class _Checker:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, problem: str) -> BundleError:
        return BundleError(f"{self.path}: {problem}. The manifest is damaged or was edited by hand; re-run `edgecls export` "
                           "or copy the bundle again.")

    def fields(self, where: str, obj: Any, schema: dict, optional: tuple[str, ...] = ()) -> None:
        if not isinstance(obj, dict):
            raise self.fail(f"{where or 'the manifest'} must be a JSON object, got {type(obj).__name__}")
        missing = sorted(set(schema) - set(obj))
        unknown = sorted(set(obj) - set(schema) - set(optional))
        if missing:
            raise self.fail(f"{where or 'the manifest'} lacks {missing}")
        if unknown:
            raise self.fail(f"{where or 'the manifest'} has unknown fields {unknown}")
        for key, expected in schema.items():
            name = f"{where}.{key}" if where else key
            if isinstance(expected, dict):
                self.fields(name, obj[key], expected, _OPTIONAL_FIELDS.get(name, ()))
            elif not isinstance(obj[key], expected) or (expected is int and isinstance(obj[key], bool)):
                raise self.fail(f"{name} must be {expected.__name__}, got {type(obj[key]).__name__} {obj[key]!r:.40}")

    def check(self, manifest: Any) -> None:
        if isinstance(manifest, dict) and isinstance(manifest.get("format_version"), int) \
                and manifest["format_version"] != FORMAT_VERSION:
            version = manifest["format_version"]
            if version > FORMAT_VERSION:
                raise BundleError(f"{self.path} has format {version}, this edgecls reads {FORMAT_VERSION}: upgrade edgecls")
            raise BundleError(f"{self.path} has format {version} (no manifest digest); re-export it with this edgecls")
        self.fields("", manifest, _SCHEMA, _OPTIONAL_SECTIONS)
        classes, spec, prep = manifest["classes"], manifest["input"], manifest["preprocess"]
        if not classes or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
            raise self.fail("classes must be a non-empty list of distinct names")
        if spec["channels"] not in (1, 3) or spec["size"] < 1 or spec["color"] not in COLORS:
            raise self.fail(f"input must have channels 1 or 3, size ≥ 1 and color in {COLORS}, got {spec}")
        if spec["shape"][1:] != [spec["channels"], spec["size"], spec["size"]] or spec["shape"][0] not in (-1, 1):
            raise self.fail(f"input.shape {spec['shape']} disagrees with its size and channels (batch -1, or 1 for a fixed-batch graph)")
        if prep["crop"] not in CROPS or prep["resize"] not in RESIZES:
            raise self.fail(f"preprocess must use crop in {CROPS} and resize in {RESIZES}, got {prep['crop']!r}/{prep['resize']!r}")
        fraction = prep.get("crop_fraction", 1.0)
        if not isinstance(fraction, int | float) or isinstance(fraction, bool) or not 0 < fraction <= 1:
            raise self.fail(f"preprocess.crop_fraction must be a number in (0, 1], got {fraction!r}")
        norm = prep["normalization"]
        for key in ("mean", "std"):
            values = norm[key]
            if len(values) != spec["channels"] or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise self.fail(f"preprocess.normalization.{key} must be {spec['channels']} finite numbers, got {values}")
        if min(norm["std"]) <= 0:
            raise self.fail(f"preprocess.normalization.std must be > 0, got {norm['std']}")
        for name, entry in manifest["files"].items():
            if not _NAME.match(name) or name == MANIFEST:
                raise self.fail(f"file name {name!r} is not a plain file name inside the bundle")
            self.fields(f"files[{name!r}]", entry, _FILE_SCHEMA)
            if not _SHA256.match(entry["sha256"]) or entry["bytes"] < 0:
                raise self.fail(f"files[{name!r}] needs a 64-digit lowercase hex sha256 and a size ≥ 0")
        recorded, actual = manifest["digest"], manifest_digest(manifest)
        if recorded != actual:
            raise IntegrityError(f"{self.path}: the manifest's content does not match its digest ({recorded[:19]}… recorded, "
                                 f"{actual[:19]}… computed): it was edited after export. Re-run `edgecls export` or copy "
                                 "the bundle again.")


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict

    @classmethod
    def open(cls, root: str | os.PathLike, public_key=None) -> Bundle:
        """Read and check the manifest. `public_key` (an Ed25519 public key, PEM bytes or a PEM file path; default
        $EDGECLS_PUBLIC_KEY) makes a valid signature by that key a condition of opening."""
        root = Path(root)
        path = root / MANIFEST
        if not root.is_dir():
            raise BundleError(f"bundle directory {root} not found; create one with `edgecls export MODEL --out {root}`")
        if not path.is_file():
            raise BundleError(f"{path} is missing: {root} is not an edgecls bundle (re-run `edgecls export`)")
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{path} is not valid JSON ({exc}); re-run `edgecls export`") from exc
        except OSError as exc:
            raise BundleError(f"{path} cannot be read ({exc.strerror}); run as a user who can read the bundle, or copy "
                              "it somewhere readable") from exc
        _Checker(path).check(manifest)
        key = os.environ.get(PUBLIC_KEY_ENV) if public_key is None else public_key  # False: do not ask for one
        if key:
            from edgecls.signing import verify_manifest

            verify_manifest(manifest, key, path)
        return cls(root, manifest)

    @property
    def classes(self) -> list[str]:
        return self.manifest["classes"]

    @property
    def input(self) -> dict:
        return self.manifest["input"]

    @property
    def preprocess(self) -> dict:
        return self.manifest["preprocess"]

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    def files(self) -> list[FileEntry]:
        return [FileEntry(name=name, **entry) for name, entry in self.manifest["files"].items()]

    def find(self, format: str, precision: str, target: str | None = None, flavour: str | None = None) -> FileEntry | None:
        """The file of `format` and `precision` (and `flavour`, if given), preferring one made for `target`."""
        matches = [f for f in self.files() if f.format == format and f.precision == precision
                   and (flavour is None or f.flavour == flavour)]
        preferred = [f for f in matches if f.target == target]
        return (preferred or matches or [None])[0]

    def read_verified(self, entry: FileEntry) -> bytes:
        """The file's bytes, read once and checked against the manifest's size and sha256. Loaders take these bytes,
        never the path: a file swapped between the check and a second open could otherwise run unchecked."""
        path = self.root / entry.name
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise IntegrityError(f"{path} is listed in the manifest but missing; re-run `edgecls export`") from None
        except OSError as exc:
            raise IntegrityError(f"{path} cannot be opened ({exc.strerror}): a link, or not readable by this user; "
                                 "copy the bundle as plain files readable by this user") from exc
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise IntegrityError(f"{path} is not a regular file; re-run `edgecls export`")
            data = f.read(entry.bytes + 1)
        if len(data) != entry.bytes:
            raise IntegrityError(f"{path} is {'larger than' if len(data) > entry.bytes else f'{len(data)} bytes,'} the "
                                 f"manifest's {entry.bytes} bytes: truncated or replaced. Re-run `edgecls export` or copy "
                                 "the bundle again.")
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise IntegrityError(f"{path} sha256 {digest[:12]}… differs from the manifest's {entry.sha256[:12]}…: the file "
                                 "was edited or corrupted. Re-run `edgecls export` or copy the bundle again.")
        return data

    def verify_all(self) -> list[str]:
        for entry in self.files():
            self.read_verified(entry)
        return [entry.name for entry in self.files()]

    def engine_record(self, name: str, digest: str) -> dict | None:
        """The sealed manifest's entry for engine file `name` with sha256 `digest`; None when it lists no such engine."""
        return next((e for e in self.manifest.get("engines", [])
                     if isinstance(e, dict) and e.get("file") == name and e.get("engine_sha256") == digest), None)

    def uncovered(self) -> list[str]:
        """Names in the bundle directory that the manifest (and so its signature) does not cover; the runtime never
        loads them: files it does not list, engines whose sha256 it does not record, and engine sidecars (a listed
        engine is checked against its manifest entry, not its sidecar)."""
        listed = set(self.manifest["files"]) | {MANIFEST}
        return [path.name for path in sorted(self.root.iterdir()) if path.name not in listed
                and not (path.suffix == ".engine" and path.is_file() and self.engine_record(path.name, sha256_file(path)))]


def file_entry(path: Path, format: str, precision: str, target: str = "any", flavour: str = "") -> dict:
    """The manifest entry for a file just written."""
    return {"format": format, "precision": precision, "target": target, "flavour": flavour,
            "sha256": sha256_file(path), "bytes": path.stat().st_size}


def seal(manifest: dict) -> dict:
    """The manifest with its digest, ready to write (any old signature is dropped: it signed other content)."""
    content = {"format_version": FORMAT_VERSION,
               **{k: v for k, v in manifest.items() if k not in ("format_version", "digest", "signature")}}
    return {**content, "digest": manifest_digest(content)}


def sign_bundle(bundle_dir: str | os.PathLike, private_key_path: str | os.PathLike) -> dict:
    """Verify every file of the bundle, then write its manifest back with a signature (atomically)."""
    from edgecls.signing import load_private_key, sign_manifest

    key = load_private_key(private_key_path)
    bundle = Bundle.open(bundle_dir, public_key=False)
    bundle.verify_all()
    manifest = {**bundle.manifest, "signature": sign_manifest(bundle.manifest, key)}
    atomic_write_json(bundle.root / MANIFEST, manifest)
    return manifest["signature"]
