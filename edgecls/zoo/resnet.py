"""ResNet-18/34 with the CIFAR stem (3×3 stride-1 convolution, no max-pool) on torchvision's blocks, and the
small CIFAR ResNets (20/32/44/56) of the original paper."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from edgecls.zoo.layers import conv_bn_relu
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


class _ShortcutA(nn.Module):
    """He et al.'s option A: subsample by 2 and zero-pad the new channels; no parameters."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra = extra_channels

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class _CifarBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn_relu(in_ch, out_ch, stride=stride),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.shortcut = _ShortcutA(out_ch - in_ch) if stride != 1 or in_ch != out_ch else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNets of He et al. (2016, §4.2): 3×3 stride-1 stem, three stages of n blocks at 16/32/64 channels."""

    def __init__(self, depth: int, num_classes: int, in_channels: int):
        super().__init__()
        n = (depth - 2) // 6
        layers: list[nn.Module] = [*conv_bn_relu(in_channels, 16)]
        channels = 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                layers.append(_CifarBlock(channels, width, 2 if stage and not i else 1))
                channels = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


@register_model("CIFAR ResNet-20 (He et al.): 16/32/64 channels, option-A shortcuts", paper="91.25% CIFAR-10")
def resnet20(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return CifarResNet(20, num_classes, in_channels)


@register_model("CIFAR ResNet-32 (He et al.)", paper="92.49% CIFAR-10")
def resnet32(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return CifarResNet(32, num_classes, in_channels)


@register_model("CIFAR ResNet-44 (He et al.)", paper="92.83% CIFAR-10")
def resnet44(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return CifarResNet(44, num_classes, in_channels)


@register_model("CIFAR ResNet-56 (He et al.)", paper="93.03% CIFAR-10")
def resnet56(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return CifarResNet(56, num_classes, in_channels)
