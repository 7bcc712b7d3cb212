"""ResNet-18/34 with the CIFAR stem (3×3 stride-1 convolution, no max-pool) on torchvision's blocks."""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from edgecls.zoo.registry import register_model


def _resnet(layers: list[int], num_classes: int, in_channels: int, leaky_relu: float) -> ResNet:
    model = ResNet(BasicBlock, layers, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    if leaky_relu:
        _swap_relu(model, leaky_relu)
    return model


def _swap_relu(module: nn.Module, slope: float) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.LeakyReLU(slope, inplace=True))
        else:
            _swap_relu(child, slope)


@register_model("ResNet-18, CIFAR stem; leaky_relu=SLOPE swaps ReLU for LeakyReLU", paper="75.5–89.3% CIFAR-10")
def resnet18(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, leaky_relu: float = 0.0) -> nn.Module:
    return _resnet([2, 2, 2, 2], num_classes, in_channels, leaky_relu)


@register_model("ResNet-34, CIFAR stem; leaky_relu=SLOPE swaps ReLU for LeakyReLU")
def resnet34(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, leaky_relu: float = 0.0) -> nn.Module:
    return _resnet([3, 4, 6, 3], num_classes, in_channels, leaky_relu)
