"""The one place edgeseg.data meets torch: a ``torch.utils.data.Dataset`` over any dataset.

This module imports torch; ``edgeseg.data`` imports it only when ``edgeseg.data.TorchDataset`` is
first used, so the rest of edgeseg.data stays torch-free.

Augmentation randomness: each process (main or DataLoader worker) keeps its own numpy Generator
seeded from ``torch.initial_seed()``. PyTorch gives every worker a different seed and draws new
ones each epoch, so workers never repeat each other's crops, and ``torch.manual_seed`` makes a
whole run reproducible.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.utils.data

from edgeseg.data.base import Sample, SegmentationDataset


class TorchDataset(torch.utils.data.Dataset):
    """``TorchDataset(dataset, transform)[i]`` -> ``transform(dataset[i], rng)`` = (image, mask).

    ``transform`` is a :class:`~edgeseg.data.transforms.TrainTransform` /
    :class:`~edgeseg.data.transforms.EvalTransform` or any callable ``(Sample, Generator)``.
    """

    def __init__(self, dataset: SegmentationDataset, transform: Callable[[Sample, np.random.Generator], tuple]):
        self.dataset = dataset
        self.transform = transform
        self._rng: np.random.Generator | None = None
        self._rng_seed: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def rng(self) -> np.random.Generator:
        seed = torch.initial_seed()
        if self._rng is None or seed != self._rng_seed:  # a new worker, or a new epoch's workers
            self._rng, self._rng_seed = np.random.default_rng(seed), seed
        return self._rng

    def __getitem__(self, index: int):
        return self.transform(self.dataset[index], self.rng())
