"""Calibration images: a dataset spec -> graph inputs prepared exactly as the runtime prepares them.

The runtime's own :class:`~edgeseg.runtime.processing.Preprocessor` resizes and normalizes, so the
ranges NNCF, onnxruntime or PT2E observe are the ranges the file will see on the device.

Specs: any labelled ``build_dataset`` spec (``synthetic``, ``folder:PATH``, ``cityscapes:PATH``,
...), or plain unlabelled images: ``images:PATH`` (every image in PATH, or in PATH/images/), and
``folder:PATH`` when PATH has no ``masks/`` folder. Unlabelled images split into calibration
(``train``) and held-out (``val``) images: by ``train/`` and ``val/`` subfolders when there are
some, else every :data:`HELD_OUT_EVERY`-th image (sorted by name) is held out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.data import build_dataset
from edgeseg.data.base import SegmentationDataset
from edgeseg.data.errors import DatasetError
from edgeseg.errors import ConfigError
from edgeseg.metadata import ModelMetadata

# Unlabelled folders without split subfolders: every 5th image (sorted) is held out for the gate
# (20%), the others calibrate; interleaved, so both halves cover the whole recording.
HELD_OUT_EVERY = 5
UNLABELLED_LAYOUT = (
    "images:PATH with the images in PATH (or PATH/images/), optionally split into train/ and "
    "val/ subfolders (.png, .jpg, .jpeg)"
)


def is_unlabelled(spec: str) -> bool:
    """``images:PATH``, or ``folder:PATH`` whose PATH has no ``masks/`` folder."""
    kind, _, path = split_spec(spec)[0].partition(":")
    if kind == "images":
        return True
    return kind == "folder" and bool(path) and Path(path).is_dir() and not (Path(path) / "masks").is_dir()


def image_files(spec: str, split: str) -> list[Path]:
    """The image files of ``split`` (``train``: calibration, ``val``/``test``: held out) of an
    unlabelled spec (see :func:`is_unlabelled`)."""
    from edgeseg.data.files import IMAGE_SUFFIXES, list_files

    path = split_spec(spec)[0].partition(":")[2]
    root = Path(path)
    if not path or not root.is_dir():
        raise ConfigError(f"calibration images {spec!r}: {path or '(no path)'} is not a folder. Expected {UNLABELLED_LAYOUT}")
    if (root / "images").is_dir():
        root = root / "images"
    if (root / "train").is_dir() or (root / "val").is_dir():
        folder = root / ("train" if split == "train" else "val")
        if not folder.is_dir():
            raise ConfigError(f"calibration images {spec!r}: {root} has split subfolders but no {folder.name}/; add it")
        return list(list_files(folder, IMAGE_SUFFIXES).values())
    files = list(list_files(root, IMAGE_SUFFIXES).values())
    if len(files) < 2:
        raise ConfigError(
            f"calibration images {spec!r}: {root} holds {len(files)} image(s); calibration and its "
            f"held-out check need at least 2. Expected {UNLABELLED_LAYOUT}"
        )
    held_out = set(range(HELD_OUT_EVERY - 1, len(files), HELD_OUT_EVERY)) or {len(files) - 1}
    return [f for i, f in enumerate(files) if (i in held_out) == (split != "train")]


def _read_images(files: list[Path], count: int) -> list[np.ndarray]:
    from edgeseg.data.files import read_rgb

    images = []
    for i in spread_indices(len(files), count):
        try:
            images.append(read_rgb(files[i]))
        except OSError as exc:
            raise ConfigError(f"calibration image {files[i]} cannot be read ({exc}); remove it or replace it") from exc
    return images


def _at_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


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
    prepare = _preprocessor(meta, dtype)
    if is_unlabelled(name):
        files = image_files(name, split)
        if len(files) < count:
            raise ConfigError(
                f"calibration images {spec!r} hold {len(files)} calibration images (the others are held "
                f"out for the gate), fewer than --calib-size {count}; lower --calib-size or add images"
            )
        return [prepare(image, bgr=False)[0].copy() for image in _read_images(files, count)]
    inputs = []
    names = domain_specs(name, meta)
    for i, each in enumerate(names):  # a multi-head file: an equal share of every domain's images
        share = count // len(names) + (1 if i < count % len(names) else 0)
        dataset = open_dataset(each, split, meta.input_size, share)
        if len(dataset) < share:
            raise ConfigError(
                f"calibration data {each!r} holds {len(dataset)} images, fewer than the {share} "
                f"--calib-size asks of it; lower --calib-size or add images"
            )
        inputs += [prepare(s.image, bgr=False)[0].copy() for s in _spread_samples(dataset, share)]
    return inputs


def domain_specs(name: str, meta: ModelMetadata) -> list[str]:
    """The dataset specs that calibrate a file of ``meta``: the plain ``synthetic`` spec of a
    multi-domain model means each head's own synthetic domain (``synthetic_night`` ->
    ``synthetic:night``): the one of a file of one domain, all of them for the file with every head.
    Any other spec is used as given."""
    from edgeseg.validate.data import synthetic_domain

    if name != "synthetic" or not meta.domains:
        return [name]
    heads = [meta.domain] if meta.domain else [d.name for d in meta.domains]
    mapped = [synthetic_domain(h) for h in heads]
    if any(m is None for m in mapped):
        return [name]
    return [f"synthetic:{m}" for m in mapped]


def held_out_images(spec: str, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``count`` RGB uint8 images from ``spec`` (e.g. the gate's val split), for the converter's
    on-the-spot check of an int8 file: in-distribution images, since int8 ranges are calibrated
    for the data and say nothing about uniform noise."""
    name, split = split_spec(spec, default_split="val")
    if is_unlabelled(name):
        images = _read_images(image_files(name, split), count)
    else:
        images = [s.image for s in _spread_samples(open_dataset(name, split, size, count), count)]
    return [_at_size(image, size) for image in images]  # the verify step feeds them unresized


def labelled_inputs(spec: str, count: int, meta: ModelMetadata) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (graph input, label mask at model size) pairs from ``spec`` (QAT fine-tuning data)."""
    import cv2

    name, split = split_spec(spec)
    if is_unlabelled(name):
        raise ConfigError(
            f"{spec!r} holds images without masks; fine-tuning needs labelled images (folder:PATH with "
            "masks/ and classes.yaml, cityscapes:PATH, synthetic). Unlabelled images can calibrate "
            "(--calibration images:PATH)"
        )
    prepare = _preprocessor(meta, np.dtype(np.float32))
    height, width = meta.input_size
    return [
        (
            prepare(s.image, bgr=False)[0].copy(),
            cv2.resize(s.mask, (width, height), interpolation=cv2.INTER_NEAREST),
        )
        for s in _spread_samples(open_dataset(name, split, meta.input_size, count), count)
    ]
