"""Where datasets live: an explicit argument, else the EDGECLS_DATA environment variable."""

from __future__ import annotations

import os
from pathlib import Path

from edgecls.errors import DatasetError

ENV_VAR = "EDGECLS_DATA"


def data_root(data_dir: str | os.PathLike | None) -> Path:
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR)
    if not data_dir:
        raise DatasetError(f"no dataset directory given: pass --data-dir DIR or set {ENV_VAR}=DIR")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist; pass --data-dir DIR or set {ENV_VAR}=DIR")
    return root


def find_first(root: Path, candidates: list[str], missing_hint: str) -> Path:
    for candidate in candidates:
        if (root / candidate).exists():
            return root / candidate
    raise DatasetError(f"looked for {' or '.join(str(root / c) for c in candidates)}: not found. {missing_hint}")
