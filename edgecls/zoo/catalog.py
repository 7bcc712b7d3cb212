"""The zoo as data: each model's summary, paper figure, parameters and MACs, read without torch.

`catalog.json` is written from the code by `python tools/write_catalog.py` and a test keeps the two equal, so
`edgecls models` and the check of a model's name answer in the time it takes to read a file, not to import torch
and run a forward pass per model.
"""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from pathlib import Path

from edgecls.errors import ConfigError

CATALOG = Path(__file__).with_name("catalog.json")
SCHEMA = "edgecls.catalog/1"


@cache
def load_catalog() -> dict[str, dict]:
    """name → {"summary", "paper", "parameters", "macs_32x32"} (10 classes, 32×32 RGB)."""
    return json.loads(CATALOG.read_text())["models"]


def check_model_name(name: str) -> None:
    """Raise ConfigError, with the closest names, unless `name` is a zoo model."""
    if name not in load_catalog():
        raise unknown_model(name, load_catalog())


def unknown_model(name: str, known) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(known))}.")


def check_bare_name(source: str) -> None:
    """Commands that take a zoo name or a path: a bare word that names no file must be a zoo model (checked before
    the command imports torch, so a typo is answered at once)."""
    if re.fullmatch(r"[A-Za-z0-9_\-]+", source) and not Path(source).exists():
        check_model_name(source)
