"""The model registry: one decorator, one factory, metadata beside each model.

Modelled on timm's `register_model`/`create_model` and torchvision's `Weights.meta`, except that a
duplicate name raises (as torchvision does) instead of silently replacing the first model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgecls.errors import ConfigError
from edgecls.zoo.catalog import unknown_model


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    summary: str
    paper: str = ""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(summary: str, paper: str = "") -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ConfigError(f"model {name!r} is registered twice; give the second builder another name")
        _REGISTRY[name] = ModelInfo(name=name, builder=builder, summary=summary, paper=paper)
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    if name not in _REGISTRY:
        raise unknown_model(name, _REGISTRY)
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **kwargs) -> nn.Module:
    """Build a registered model for `in_channels`×`input_size`² inputs and `num_classes` outputs."""
    info = model_info(name)
    for arg, value, low in (
        ("num_classes", num_classes, 2),
        ("in_channels", in_channels, 1),
        ("input_size", input_size, 16),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{arg} must be an integer ≥ {low}, got {value!r}")
    if in_channels not in (1, 3):
        raise ConfigError(f"in_channels must be 1 (grey) or 3 (RGB), got {in_channels}")
    return info.builder(num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, in_channels: int = 3, input_size: int = 32) -> int:
    """Multiply-accumulates of convolutions and linear layers for one image (the usual convention)."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, in_channels, input_size, input_size))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total
