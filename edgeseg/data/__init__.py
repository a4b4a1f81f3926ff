"""Datasets for training and evaluation: real on-disk layouts, a synthetic multi-domain street
dataset, joint image/mask augmentations, and a torch ``Dataset`` wrapper.

Everything here except :class:`TorchDataset` and the transforms' tensor output is numpy-only.
"""

from edgeseg.data.base import Sample, SegmentationDataset, ValidationReport
from edgeseg.data.build import DATASET_KINDS, build_dataset
from edgeseg.data.errors import DatasetError, DatasetLabelError, DatasetLayoutError, DatasetSpecError
from edgeseg.data.folder import write_folder

__all__ = [
    "DATASET_KINDS",
    "DatasetError",
    "DatasetLabelError",
    "DatasetLayoutError",
    "DatasetSpecError",
    "Sample",
    "SegmentationDataset",
    "TorchDataset",
    "ValidationReport",
    "build_dataset",
    "write_folder",
]


def __getattr__(name: str):
    # TorchDataset subclasses torch's Dataset: import torch only when it is asked for.
    if name == "TorchDataset":
        from edgeseg.data.torch_dataset import TorchDataset

        return TorchDataset
    raise AttributeError(f"module 'edgeseg.data' has no attribute {name!r}")
