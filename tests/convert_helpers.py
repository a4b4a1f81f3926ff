"""A tiny private segmentation model for converter tests (no dependency on the zoo)."""

from __future__ import annotations

import pytest

# A test module importing these helpers needs torch: without it, it is skipped.
torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from edgeseg.metadata import ModelMetadata  # noqa: E402
from edgeseg.models.base import SegmentationModel  # noqa: E402


class _TinyEncoder(nn.Module):
    out_channels = (8, 16)
    strides = (2, 4)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.Hardswish())
        self.stage = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.stem(x)
        return [a, self.stage(a)]


class _TinyDecoder(nn.Module):
    def __init__(self, num_classes: int, odd_op: bool) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(16, num_classes, 1)
        self.odd_op = odd_op

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        if self.odd_op:
            # A deliberately unconvertible op: a matrix inverse over the spatial dims.
            x = x + torch.linalg.inv(x[..., :4, :4] + 4 * torch.eye(4)).sum()
        return self.classifier(x)


class TinySegModel(SegmentationModel):
    size_divisor = 4

    def __init__(self, num_classes: int = 5, odd_op: bool = False) -> None:
        super().__init__()
        self.encoder = _TinyEncoder()
        self.decoder = _TinyDecoder(num_classes, odd_op)
        self.metadata = ModelMetadata(
            model="tiny_test", classes=tuple(f"c{i}" for i in range(num_classes)), input_size=(32, 32)
        )
        self.build_config = {}
        # Non-trivial BN statistics, so folding mistakes would show.
        for bn in (m for m in self.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
        self.eval()
