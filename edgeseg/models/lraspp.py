"""The Lite R-ASPP segmentation head (MobileNetV3 paper, Sec. 6.4 and Fig. 10), shared by every
encoder that carries it (MobileNetV3, Mobile-Former).

A 1x1 conv + BN + ReLU branch on the deep (1/16 or 1/32) features, re-weighted per channel by a
global-average-pool -> 1x1 conv -> sigmoid gate, upsampled bilinearly to the 1/8 features and
classified, plus a 1x1 classifier of the 1/8 features; the two logit maps are added. Parameter
names follow torchvision's ``LRASPPHead`` (``cbr.0``, ``cbr.1``, ``scale.1``, ``low_classifier``,
``high_classifier``), so torchvision state dicts load as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LRASPPHead(nn.Module):
    """Lite R-ASPP on an encoder's feature list: ``features[low_index]`` (1/8) and
    ``features[high_index]`` (the deepest, by default the last).

    ``gate_bias``: a bias in the gate's 1x1 conv (torchvision's head has none; Mobile-Former's
    head, trained from scratch here, has one).
    """

    def __init__(
        self,
        low_channels: int,
        high_channels: int,
        num_classes: int,
        inter_channels: int = 128,
        *,
        low_index: int = 0,
        high_index: int = -1,
        gate_bias: bool = False,
    ) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.BatchNorm2d(inter_channels),  # PyTorch default eps/momentum, as torchvision's head
            nn.ReLU(),
        )
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(high_channels, inter_channels, 1, bias=gate_bias),
            nn.Sigmoid(),
        )
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)
        self.low_index = low_index
        self.high_index = high_index

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low, high = features[self.low_index], features[self.high_index]
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)
