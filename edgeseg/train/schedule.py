"""Learning-rate schedule as a pure function of the step, so resuming needs only the step."""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, total_steps: int, *, schedule: str, warmup_steps: int = 0, poly_power: float = 0.9) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based) of ``total_steps``.

    Linear warm-up from ~0 over ``warmup_steps``, then poly ((1 - t)^power, DeepLab's recipe)
    or half-cosine decay to zero over the remaining steps.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / decay_steps)
    if schedule == "poly":
        return (1.0 - t) ** poly_power
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {schedule!r}")


def build_optimizer(params, *, name: str, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
