"""Joint image/mask augmentations: what happens to the image happens to the mask.

Two stages, so the expensive float work can run where it is cheapest:

1. :meth:`TrainTransform.geometry` (numpy + OpenCV, in a loader worker): random scale, crop and
   flip as ONE inverse affine warp straight to the crop, on uint8 pixels. Its cost grows with the
   crop, not with the scaled image (scale 2 at 512x1024 would otherwise resize to 1024x2048
   first), and only uint8 crops cross the worker pipes (1.5 MB at 512x1024 instead of 6 MB of
   float32). The image is resampled bilinearly, the mask by nearest neighbour at the same pixel
   centres (labels are never blended). The result is a :class:`Crop`: the crop, its mask, the
   colour-jitter factors drawn for it and the size of its valid (non-padded) top-left region.
2. The pixel stage: colour jitter and normalization, on the valid region; padding becomes 0 in the
   image (the mean colour once normalized) and 255 in the mask (ignored). :func:`pixels_to_chw` is
   the numpy version (``apply``); ``edgeseg.train.batches.PixelStage`` does the same arithmetic in
   torch on a whole batch, on the GPU when training there.

Randomness comes from a ``numpy.random.Generator``: pass one (``TorchDataset`` passes one per
DataLoader worker, seeded from torch's worker seed), or leave it out to use one seeded from
``torch.initial_seed()`` in this process. The draws are scale, top, left, flip, then jitter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from edgeseg.data.base import Sample
from edgeseg.errors import ConfigError
from edgeseg.metadata import IMAGENET_MEAN, IMAGENET_STD
from edgeseg.metrics import IGNORE_INDEX

# Rec. 601 luma weights of R, G, B: the grey that contrast and saturation jitter pivot on (the
# torch pixel stage in edgeseg.train.batches uses the same weights).
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


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


class Crop(NamedTuple):
    """What the geometry stage hands to the pixel stage (all numpy, uint8 pixels)."""

    image: np.ndarray  # out_h x out_w x 3 uint8 RGB; only the valid region is meaningful
    mask: np.ndarray  # out_h x out_w uint8 train ids, 255 outside the valid region
    jitter: np.ndarray  # (3,) float32 brightness, contrast, saturation factors (1 = unchanged)
    valid: tuple[int, int]  # (h, w) of the top-left region that holds image pixels


def jitter_pixels(image: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Brightness, contrast (about the mean grey), saturation (about each pixel's grey), in place on
    float32 H x W x 3 pixels in 0..255, clipped back to that range."""
    brightness, contrast, saturation = (np.float32(v) for v in factors)
    image *= brightness
    grey = image @ LUMA
    image -= grey.mean()
    image *= contrast
    image += grey.mean()
    grey = (image @ LUMA)[..., None]
    image -= grey
    image *= saturation
    image += grey
    return np.clip(image, 0, 255, out=image)


def pixels_to_chw(crop: Crop, mean, std, jitter: bool) -> tuple[np.ndarray, np.ndarray]:
    """The numpy pixel stage: (normalized float32 3 x H x W, int64 mask); padding 0 / 255."""
    h, w = crop.valid
    out_h, out_w = crop.mask.shape
    pixels = crop.image[:h, :w]
    if jitter:
        pixels = jitter_pixels(pixels.astype(np.float32), crop.jitter)
    image_out = np.zeros((3, out_h, out_w), np.float32)  # 0 = the mean colour once normalized
    image_out[:, :h, :w] = normalize_to_chw(pixels, mean, std)
    return image_out, crop.mask.astype(np.int64)


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
        """Both stages in numpy: (normalized float32 3 x H x W, int64 mask)."""
        return pixels_to_chw(self.geometry(sample, rng), self.mean, self.std, self.color_jitter > 0)

    def geometry(self, sample: Sample, rng: np.random.Generator | None = None) -> Crop:
        """Random scale, crop and flip in one warp, and the jitter factors (see the module doc)."""
        rng = rng if rng is not None else self._process_rng.get()
        cv2 = _cv2()
        out_h, out_w = self.size
        in_h, in_w = sample.mask.shape
        factor = max(out_h / in_h, out_w / in_w) * rng.uniform(*self.scale)
        new_h, new_w = max(round(in_h * factor), 1), max(round(in_w * factor), 1)
        top = int(rng.integers(0, max(new_h - out_h, 0) + 1))
        left = int(rng.integers(0, max(new_w - out_w, 0) + 1))
        h, w = min(out_h, new_h - top), min(out_w, new_w - left)  # smaller than size: padded below
        flip = self.flip and rng.random() < 0.5
        j = self.color_jitter
        jitter = (1 + rng.uniform(-j, j, 3)).astype(np.float32) if j > 0 else np.ones(3, np.float32)
        # Output pixel x of the crop is pixel x + left of the image resized to new_w (mirrored when
        # flipped). Bilinear samples it at source position (x + left + 0.5) * sx - 0.5, exactly
        # where cv2.resize would; nearest (which warpAffine rounds) takes the source pixel whose
        # centre is closest to that point, so labels sit where the image's pixels came from.
        sx, sy = in_w / new_w, in_h / new_h
        first_x = (w - 1 + left) if flip else left
        step_x = -sx if flip else sx
        bilinear = np.array([[step_x, 0, (first_x + 0.5) * sx - 0.5], [0, sy, (top + 0.5) * sy - 0.5]])
        flags = cv2.WARP_INVERSE_MAP
        image = cv2.warpAffine(sample.image, bilinear, (w, h), flags=flags | cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(sample.mask, bilinear, (w, h), flags=flags | cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_REPLICATE)
        if (h, w) != (out_h, out_w):
            image_out = np.zeros((out_h, out_w, 3), np.uint8)
            mask_out = np.full((out_h, out_w), IGNORE_INDEX, np.uint8)
            image_out[:h, :w], mask_out[:h, :w] = image, mask
            image, mask = image_out, mask_out
        return Crop(image, mask, jitter, (h, w))


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
        return pixels_to_chw(self.geometry(sample, rng), self.mean, self.std, jitter=False)

    def geometry(self, sample: Sample, rng: np.random.Generator | None = None) -> Crop:
        """The resize alone (no draws), as a :class:`Crop` for the shared pixel stage."""
        image, mask = sample.image, sample.mask
        if self.size is not None and mask.shape != self.size:
            cv2 = _cv2()
            out_h, out_w = self.size
            image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
        return Crop(np.ascontiguousarray(image), np.ascontiguousarray(mask), np.ones(3, np.float32), mask.shape)
