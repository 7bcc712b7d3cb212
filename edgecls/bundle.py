"""The bundle: the directory `edgecls export` writes and the runtime trusts (no torch needed here).

`edgecls.json` is the manifest. Everything the runtime needs to classify a frame correctly is in it:
class names, input shape and colour order, crop/resize policy, normalization, and for every file its
precision, flavour, target, size and sha256. A file whose size or hash differs from the manifest is
refused before it is loaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgecls.errors import BundleError, IntegrityError
from edgecls.fileio import sha256_file

MANIFEST = "edgecls.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    name: str
    format: str
    precision: str
    target: str
    flavour: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict

    @classmethod
    def open(cls, root: str | os.PathLike) -> Bundle:
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
        missing = {"format_version", "model", "classes", "input", "preprocess", "files"} - set(manifest)
        if missing:
            raise BundleError(f"{path} lacks {sorted(missing)}; re-run `edgecls export`")
        if manifest["format_version"] > FORMAT_VERSION:
            raise BundleError(f"{path} has format {manifest['format_version']}, this edgecls reads ≤ {FORMAT_VERSION}: upgrade edgecls")
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

    def files(self) -> list[FileEntry]:
        return [FileEntry(name=name, **entry) for name, entry in self.manifest["files"].items()]

    def find(self, format: str, precision: str, target: str | None = None, flavour: str | None = None) -> FileEntry | None:
        """The file of `format` and `precision` (and `flavour`, if given), preferring one made for `target`."""
        matches = [f for f in self.files() if f.format == format and f.precision == precision
                   and (flavour is None or f.flavour == flavour)]
        preferred = [f for f in matches if f.target == target]
        return (preferred or matches or [None])[0]

    def verified_path(self, entry: FileEntry) -> Path:
        """The file's path after checking its size and sha256 against the manifest."""
        path = self.root / entry.name
        if not path.is_file():
            raise IntegrityError(f"{path} is listed in the manifest but missing; re-run `edgecls export`")
        size = path.stat().st_size
        if size != entry.bytes:
            raise IntegrityError(f"{path} is {size} bytes, the manifest says {entry.bytes}: truncated or replaced. "
                                 "Re-run `edgecls export` or copy the bundle again.")
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise IntegrityError(f"{path} sha256 {digest[:12]}… differs from the manifest's {entry.sha256[:12]}…: the file "
                                 "was edited or corrupted. Re-run `edgecls export` or copy the bundle again.")
        return path

    def verify_all(self) -> list[str]:
        return [self.verified_path(f).name for f in self.files()]


def file_entry(path: Path, format: str, precision: str, target: str = "any", flavour: str = "") -> dict:
    """The manifest entry for a file just written."""
    return {"format": format, "precision": precision, "target": target, "flavour": flavour,
            "sha256": sha256_file(path), "bytes": path.stat().st_size}
