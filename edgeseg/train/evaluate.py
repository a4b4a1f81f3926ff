"""Per-domain evaluation: mIoU, per-class IoU and pixel accuracy from one ConfusionMatrix.

Each process scores its shard; the confusion matrices are summed over processes, so every rank
ends with the scores of the whole validation split.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.data import DataLoader

from edgeseg.metrics import ConfusionMatrix, SegmentationScores
from edgeseg.train.batches import without_worker_tracebacks
from edgeseg.train.device import DeviceSetup
from edgeseg.train.distributed import DistInfo, all_reduce_sum


@torch.no_grad()
def evaluate_domain(model: nn.Module, loader: DataLoader, *, domain: str | None, classes: tuple[str, ...],
                    setup: DeviceSetup, dist_info: DistInfo) -> SegmentationScores:
    """Score ``model`` (the head of ``domain`` for a multi-domain model) on ``loader``."""
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(len(classes))
    autocast = (torch.autocast(setup.device.type, dtype=setup.amp_dtype) if setup.amp_dtype
                else contextlib.nullcontext())
    for images, masks in without_worker_tracebacks(loader):
        images = images.to(setup.device, non_blocking=True)
        if setup.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(images) if domain is None else model(images, domain=domain)
        matrix.update(logits.argmax(1).cpu().numpy(), masks.numpy())
    matrix.matrix = all_reduce_sum(matrix.matrix, dist_info, setup.device)
    model.train(was_training)
    return matrix.scores(classes)
