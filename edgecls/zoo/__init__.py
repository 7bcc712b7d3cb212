"""The model zoo. Using the registry (`create_model`, `list_models`, ...) registers every model family.

The families and the registry import torch, so they load on first use (PEP 562): `edgecls.zoo.catalog` and
`edgecls.zoo.pretrained` are read where torch is not installed (`edgecls models` on a robot), and a mistyped
model name is answered before torch is imported.
"""

from __future__ import annotations

import importlib

__all__ = ["ModelInfo", "count_macs", "count_parameters", "create_model", "list_models", "model_info", "register_model"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'edgecls.zoo' has no attribute {name!r}")
    for family in ("classic", "custom", "inception", "mobilenet", "resnet", "whitened"):
        importlib.import_module(f"edgecls.zoo.{family}")
    return getattr(importlib.import_module("edgecls.zoo.registry"), name)
