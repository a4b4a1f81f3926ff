"""Calibration images: a dataset spec -> graph inputs prepared exactly as the runtime prepares them.

The runtime's own :class:`~edgeseg.runtime.processing.Preprocessor` resizes and normalizes, so the
ranges NNCF, onnxruntime or PT2E observe are the ranges the file will see on the device.
"""

from __future__ import annotations

import numpy as np

from edgeseg.data import build_dataset
from edgeseg.data.base import SegmentationDataset
from edgeseg.data.errors import DatasetError
from edgeseg.errors import ConfigError
from edgeseg.metadata import ModelMetadata


def open_dataset(spec: str, split: str, size: tuple[int, int], length: int | None = None) -> SegmentationDataset:
    """``synthetic[:domain]`` (drawn at ``size``) or any ``build_dataset`` spec, as a ConfigError on failure."""
    kind = spec.split(":")[0]
    options = {"size": size, **({"length": length} if length else {})} if kind == "synthetic" else {}
    try:
        return build_dataset(spec, split, **options)
    except DatasetError as exc:
        raise ConfigError(f"calibration data {spec!r} ({split} split): {exc}") from exc


def split_spec(spec: str, default_split: str = "train") -> tuple[str, str]:
    """``synthetic:train`` -> (``synthetic``, ``train``); a spec without a split gets ``default_split``."""
    head, _, last = spec.rpartition(":")
    if head and last in ("train", "val", "test"):
        return head, last
    return spec, default_split


def _spread_samples(dataset: SegmentationDataset, count: int) -> list:
    """Up to ``count`` samples spread over the whole split (a folder's first files are often one
    sequence), each loaded once."""
    return [dataset[i] for i in spread_indices(len(dataset), count)]


def spread_indices(length: int, count: int) -> list[int]:
    """Up to ``count`` indices spread evenly over ``range(length)``."""
    return np.linspace(0, length - 1, min(count, length)).round().astype(int).tolist()


def _preprocessor(meta: ModelMetadata, dtype: np.dtype):
    """The runtime's own preprocessing for a graph input of ``meta``'s layout and size."""
    from edgeseg.runtime.backend import TensorInfo
    from edgeseg.runtime.processing import Preprocessor

    height, width = meta.input_size
    shape = (1, 3, height, width) if meta.layout == "nchw" else (1, height, width, 3)
    return Preprocessor(meta, TensorInfo("image", shape, np.dtype(dtype)))


def calibration_inputs(spec: str, count: int, meta: ModelMetadata, dtype: np.dtype = np.dtype(np.float32)) -> list[np.ndarray]:
    """``count`` graph inputs (batch of one each) from the images of ``spec``."""
    name, split = split_spec(spec)
    dataset = open_dataset(name, split, meta.input_size, count)
    if len(dataset) < count:
        raise ConfigError(
            f"calibration data {spec!r} holds {len(dataset)} images, fewer than --calib-size {count}; "
            "lower --calib-size or add images"
        )
    prepare = _preprocessor(meta, dtype)
    return [prepare(s.image, bgr=False)[0].copy() for s in _spread_samples(dataset, count)]


def held_out_images(spec: str, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``count`` RGB uint8 images from ``spec`` (e.g. the gate's val split), for the converter's
    on-the-spot check of an int8 file: in-distribution images, since int8 ranges are calibrated
    for the data and say nothing about uniform noise."""
    name, split = split_spec(spec, default_split="val")
    return [s.image for s in _spread_samples(open_dataset(name, split, size, count), count)]


def labelled_inputs(spec: str, count: int, meta: ModelMetadata) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (graph input, label mask at model size) pairs from ``spec`` (QAT fine-tuning data)."""
    import cv2

    name, split = split_spec(spec)
    prepare = _preprocessor(meta, np.dtype(np.float32))
    height, width = meta.input_size
    return [
        (
            prepare(s.image, bgr=False)[0].copy(),
            cv2.resize(s.mask, (width, height), interpolation=cv2.INTER_NEAREST),
        )
        for s in _spread_samples(open_dataset(name, split, meta.input_size, count), count)
    ]
