"""Parameter and FLOP counts, measured with torch's own FLOP counter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Complexity:
    params: int
    flops: int  # floating-point operations of one forward pass (a multiply-add counts 2)
    input_size: tuple[int, int]

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def gmacs(self) -> float:
        """Multiply-adds, the unit of the MobileNet and Mobile-Former papers."""
        return self.flops / 2e9


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def measure_complexity(model: nn.Module, height: int, width: int) -> Complexity:
    """Params and FLOPs of ``model`` on one ``3 x height x width`` image.

    Counted by ``torch.utils.flop_counter`` (convolutions, matmuls, attention); elementwise ops
    and resizes are not counted, as in the papers' tables.
    """
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, height, width))
    finally:
        model.train(was_training)
    return Complexity(count_params(model), int(counter.get_total_flops()), (height, width))
