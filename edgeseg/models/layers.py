"""Small building blocks shared by the zoo's CNNs (MobileNetV3, Mobile-Former, heads).

Module and parameter names follow torchvision (``Conv2dNormActivation`` is a ``Sequential`` of
conv ``0``, norm ``1``, activation ``2``; ``SqueezeExcitation`` has ``fc1`` / ``fc2``), so
state dicts built from these blocks keep torchvision's key names and load its checkpoints as is.
"""

from __future__ import annotations

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` (MobileNet rule).

    Never goes below ``min_value`` (default ``divisor``) nor more than 10% below ``value``:
    hardware kernels run fastest on multiples of 8, and width multipliers must not starve a layer.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation, with "same" padding for odd kernels.

    ``activation=None`` leaves the activation out (linear bottleneck projections); the
    Sequential then has two children, as torchvision's ``Conv2dNormActivation``.
    ``bn_eps`` / ``bn_momentum`` default to PyTorch's; MobileNetV3 uses 1e-3 / 0.01.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = nn.ReLU,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"ConvBNAct needs an odd kernel size for same padding, got {kernel_size}")
        # Padding keeps H and W at ceil(size / stride) for any dilation.
        padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                dilation=dilation, groups=groups, bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
        ]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Channel attention: global average pool -> 1x1 conv -> ReLU -> 1x1 conv -> gate, times input.

    The gate is a hard-sigmoid by default (MobileNetV3, Sec. 5.2: cheap and quantization
    friendly); pass ``gate=nn.Sigmoid`` for the original SENet.
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        *,
        gate: type[nn.Module] = nn.Hardsigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.activation = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.scale_activation = gate()

    def channel_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, C, 1, 1) weights in [0, 1] that multiply ``x``."""
        return self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_weights(x)
