"""The face-recognition study's custom CNNs, adapted to CIFAR/Fashion-MNIST input sizes.

`baseline_cnn` is its 4-convolution baseline; `tronnet` its 7-convolution TronNet. The study's inputs were
larger, so the dense head is sized from the actual input rather than hard-coded.
"""

from __future__ import annotations

from torch import nn

from edgecls.zoo.classic import SequentialClassifier
from edgecls.zoo.layers import conv_bn_relu
from edgecls.zoo.registry import register_model


def _head(hidden: int, num_classes: int):
    return lambda n: nn.Sequential(
        nn.Linear(n, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(hidden, num_classes)
    )


@register_model("4-conv baseline CNN of the face-recognition study")
def baseline_cnn(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    features = nn.Sequential(
        *conv_bn_relu(in_channels, 32),
        *conv_bn_relu(32, 32),
        nn.MaxPool2d(2),
        *conv_bn_relu(32, 64),
        *conv_bn_relu(64, 64),
        nn.MaxPool2d(2),
    )
    return SequentialClassifier(features, _head(256, num_classes), in_channels, input_size)


@register_model("7-conv TronNet of the face-recognition study")
def tronnet(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    features = nn.Sequential(
        *conv_bn_relu(in_channels, 32),
        *conv_bn_relu(32, 32),
        nn.MaxPool2d(2),
        *conv_bn_relu(32, 64),
        *conv_bn_relu(64, 64),
        nn.MaxPool2d(2),
        *conv_bn_relu(64, 128),
        *conv_bn_relu(128, 128),
        *conv_bn_relu(128, 128),
        nn.MaxPool2d(2),
    )
    return SequentialClassifier(features, _head(512, num_classes), in_channels, input_size)
