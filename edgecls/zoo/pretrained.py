"""Bundled weights: `weights/<model>.<dataset>.pt` plus a model card `weights/<model>.<dataset>.json`."""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"


def bundled_weights(model: str, dataset: str = "cifar10") -> Path | None:
    path = WEIGHTS_DIR / f"{model}.{dataset}.pt"
    return path if path.is_file() else None


def model_card(model: str, dataset: str = "cifar10") -> dict | None:
    path = WEIGHTS_DIR / f"{model}.{dataset}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def all_cards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(WEIGHTS_DIR.glob("*.json"))}
