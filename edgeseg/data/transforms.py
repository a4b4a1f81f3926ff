"""Joint image/mask augmentations: what happens to the image happens to the mask.

Geometry (scale, crop, flip) moves image and mask together: the image is resized bilinearly,
the mask with nearest neighbour (labels are never blended), and pixels outside the image after
a crop are 255 in the mask (ignored) and 0 in the normalized image (the mean colour).
Colour jitter touches the image only. Numpy and OpenCV do the work; ``__call__`` wraps the
result in torch tensors, ``apply`` returns numpy arrays.

Randomness comes from a ``numpy.random.Generator``: pass one (``TorchDataset`` passes one per
DataLoader worker, seeded from torch's worker seed), or leave it out to use one seeded from
``torch.initial_seed()`` in this process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeseg.data.base import Sample
from edgeseg.errors import ConfigError
from edgeseg.metadata import IMAGENET_MEAN, IMAGENET_STD
from edgeseg.metrics import IGNORE_INDEX

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _cv2():
    import cv2

    return cv2


def _check_size(size) -> tuple[int, int]:
    if size is None or len(size) != 2 or min(int(v) for v in size) < 1:
        raise ConfigError(f"size {size} must be (height, width) with both >= 1")
    return int(size[0]), int(size[1])


def normalize_to_chw(image: np.ndarray, mean, std) -> np.ndarray:
    """H x W x 3 (0..255) -> 3 x H x W float32, ``(pixel / 255 - mean) / std`` per channel."""
    scale = np.float32(1.0 / 255.0) / np.asarray(std, np.float32)
    shift = np.asarray(mean, np.float32) / np.asarray(std, np.float32)
    out = np.empty((3, *image.shape[:2]), np.float32)
    for c in range(3):  # contiguous planes: faster than broadcasting over a last axis of 3
        np.multiply(image[..., c], scale[c], out=out[c], dtype=np.float32)
        out[c] -= shift[c]
    return out


def _to_torch(image: np.ndarray, mask: np.ndarray):
    import torch

    return torch.from_numpy(image), torch.from_numpy(mask)


class _ProcessRng:
    """A Generator seeded from ``torch.initial_seed()``, reseeded when that seed changes."""

    def __init__(self):
        self.seed, self.rng = None, None

    def get(self) -> np.random.Generator:
        try:
            import torch
        except ImportError:  # numpy-only use: one unseeded stream per process
            seed = -1
        else:
            seed = torch.initial_seed()
        if seed == -1 and self.rng is None:
            self.seed, self.rng = seed, np.random.default_rng()
        elif self.rng is None or seed != self.seed:
            self.seed, self.rng = seed, np.random.default_rng(seed)
        return self.rng


@dataclass
class TrainTransform:
    """Random scale -> colour jitter -> normalize -> random crop (pad 255) -> random flip.

    Fields:
        size: (height, width) of the crop the network trains on.
        mean, std: normalization of RGB in [0, 1] (ImageNet statistics by default).
        scale: range of the random scale, relative to the scale at which the image just covers
            ``size`` (so 1.0 = the whole image height or width fits the crop exactly).
        flip: random horizontal flip with probability 0.5.
        color_jitter: largest relative change of brightness, contrast and saturation (0 = off).
    """

    size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    color_jitter: float = 0.2

    def __post_init__(self) -> None:
        self.size = _check_size(self.size)
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"scale {self.scale} must be (low, high) with 0 < low <= high")
        if not 0 <= self.color_jitter < 1:
            raise ConfigError(f"color_jitter {self.color_jitter} must be in [0, 1)")
        self._process_rng = _ProcessRng()

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None):
        """(image float32 tensor 3 x H x W normalized, mask int64 tensor H x W)."""
        return _to_torch(*self.apply(sample, rng))

    def apply(self, sample: Sample, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        rng = rng if rng is not None else self._process_rng.get()
        cv2 = _cv2()
        out_h, out_w = self.size
        in_h, in_w = sample.mask.shape
        factor = max(out_h / in_h, out_w / in_w) * rng.uniform(*self.scale)
        new_h, new_w = max(round(in_h * factor), 1), max(round(in_w * factor), 1)
        image = cv2.resize(sample.image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(sample.mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        top = int(rng.integers(0, max(new_h - out_h, 0) + 1))
        left = int(rng.integers(0, max(new_w - out_w, 0) + 1))
        image = image[top : top + out_h, left : left + out_w]  # crops smaller than size are padded below
        mask = mask[top : top + out_h, left : left + out_w]
        if self.flip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        pixels = self._jitter(image.astype(np.float32), rng) if self.color_jitter > 0 else image
        image_out = np.zeros((3, out_h, out_w), np.float32)  # 0 = the mean colour once normalized
        mask_out = np.full((out_h, out_w), IGNORE_INDEX, np.int64)
        h, w = mask.shape
        image_out[:, :h, :w] = normalize_to_chw(pixels, self.mean, self.std)
        mask_out[:h, :w] = mask
        return image_out, mask_out

    def _jitter(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        j = self.color_jitter
        brightness, contrast, saturation = 1 + rng.uniform(-j, j, 3)
        image *= np.float32(brightness)
        grey = image @ _LUMA
        image -= grey.mean()
        image *= np.float32(contrast)
        image += grey.mean()
        grey = (image @ _LUMA)[..., None]
        image -= grey
        image *= np.float32(saturation)
        image += grey
        return np.clip(image, 0, 255, out=image)


@dataclass
class EvalTransform:
    """Resize to ``size`` (image bilinear, mask nearest; ``None`` keeps the size) and normalize.

    Fields:
        size: (height, width) the network sees, or None to keep each image's own size.
        mean, std: normalization of RGB in [0, 1] (ImageNet statistics by default).
    """

    size: tuple[int, int] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.size is not None:
            self.size = _check_size(self.size)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None):
        return _to_torch(*self.apply(sample, rng))

    def apply(self, sample: Sample, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        image, mask = sample.image, sample.mask
        if self.size is not None and mask.shape != self.size:
            cv2 = _cv2()
            out_h, out_w = self.size
            image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
        return normalize_to_chw(image, self.mean, self.std), mask.astype(np.int64)
