"""The bundle: the directory `edgecls export` writes and the runtime trusts (no torch needed here).

`edgecls.json` is the manifest (`edgecls.manifest`: typed records, checked in full on every load):
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
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from edgecls.errors import BundleError, IntegrityError
from edgecls.fileio import atomic_write_json, sha256_file
from edgecls.imaging import Policy
from edgecls.manifest import MANIFEST, FileRecord, InputSpec, Manifest, read_manifest, seal

__all__ = ["MANIFEST", "Bundle", "FileEntry", "file_entry", "seal", "sign_bundle"]
PUBLIC_KEY_ENV = "EDGECLS_PUBLIC_KEY"


@dataclass(frozen=True)
class FileEntry(FileRecord):
    """A manifest file record with its name (the key it is listed under)."""

    name: str = ""


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: Manifest

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
            raise BundleError(
                f"{path} cannot be read ({exc.strerror}); run as a user who can read the bundle, or copy "
                "it somewhere readable"
            ) from exc
        record = read_manifest(manifest, path)
        key = os.environ.get(PUBLIC_KEY_ENV) if public_key is None else public_key  # False: do not ask for one
        if key:
            from edgecls.signing import verify_manifest

            verify_manifest(manifest, key, path)
        return cls(root, record)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def input(self) -> InputSpec:
        return self.manifest.input

    @property
    def preprocess(self) -> Policy:
        return self.manifest.preprocess

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def files(self) -> list[FileEntry]:
        return [FileEntry(name=name, **asdict(entry)) for name, entry in self.manifest.files.items()]

    def find(
        self, format: str, precision: str, target: str | None = None, flavour: str | None = None
    ) -> FileEntry | None:
        """The file of `format` and `precision` (and `flavour`, if given), preferring one made for `target`."""
        matches = [
            f
            for f in self.files()
            if f.format == format and f.precision == precision and (flavour is None or f.flavour == flavour)
        ]
        preferred = [f for f in matches if f.target == target]
        return (preferred or matches or [None])[0]

    def read_verified(self, entry: FileEntry) -> bytes:
        """The file's bytes, read once and checked against the manifest's size and sha256. Loaders take these bytes,
        never the path: a file swapped between the check and a second open could otherwise run unchecked."""
        path = self.root / entry.name
        try:
            # O_NONBLOCK: a FIFO planted under a listed name would block this open forever; it returns at once and
            # the regular-file check below refuses it (on a regular file the flag changes nothing)
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise IntegrityError(f"{path} is listed in the manifest but missing; re-run `edgecls export`") from None
        except OSError as exc:
            raise IntegrityError(
                f"{path} cannot be opened ({exc.strerror}): a link, or not readable by this user; "
                "copy the bundle as plain files readable by this user"
            ) from exc
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise IntegrityError(f"{path} is not a regular file; re-run `edgecls export`")
            data = f.read(entry.bytes + 1)
        if len(data) != entry.bytes:
            raise IntegrityError(
                f"{path} is {'larger than' if len(data) > entry.bytes else f'{len(data)} bytes,'} the "
                f"manifest's {entry.bytes} bytes: truncated or replaced. Re-run `edgecls export` or copy "
                "the bundle again."
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise IntegrityError(
                f"{path} sha256 {digest[:12]}… differs from the manifest's {entry.sha256[:12]}…: the file "
                "was edited or corrupted. Re-run `edgecls export` or copy the bundle again."
            )
        return data

    def verify_all(self) -> list[str]:
        for entry in self.files():
            self.read_verified(entry)
        return [entry.name for entry in self.files()]

    def engine_record(self, name: str, digest: str) -> dict | None:
        """The sealed manifest's entry for engine file `name` with sha256 `digest`; None when it lists no such
        engine."""
        return next(
            (
                e
                for e in self.manifest.engines or []
                if isinstance(e, dict) and e.get("file") == name and e.get("engine_sha256") == digest
            ),
            None,
        )

    def uncovered(self) -> list[str]:
        """Names in the bundle directory that the manifest (and so its signature) does not cover; the runtime never
        loads them: files it does not list, engines whose sha256 it does not record, and engine sidecars (a listed
        engine is checked against its manifest entry, not its sidecar)."""
        listed = set(self.manifest.files) | {MANIFEST}
        return [
            path.name
            for path in sorted(self.root.iterdir())
            if path.name not in listed
            and not (path.suffix == ".engine" and path.is_file() and self.engine_record(path.name, sha256_file(path)))
        ]


def file_entry(path: Path, format: str, precision: str, target: str = "any", flavour: str = "") -> dict:
    """The manifest entry for a file just written."""
    return {
        "format": format,
        "precision": precision,
        "target": target,
        "flavour": flavour,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
    }


def sign_bundle(bundle_dir: str | os.PathLike, private_key_path: str | os.PathLike) -> dict:
    """Verify every file of the bundle, then write its manifest back with a signature (atomically)."""
    from edgecls.signing import load_private_key, sign_manifest

    key = load_private_key(private_key_path)
    bundle = Bundle.open(bundle_dir, public_key=False)
    bundle.verify_all()
    manifest = {**bundle.manifest.raw, "signature": sign_manifest(bundle.manifest.raw, key)}
    atomic_write_json(bundle.root / MANIFEST, manifest)
    return manifest["signature"]
