"""Image and mask resizing: OpenCV when installed, a vectorized numpy fallback otherwise.

Both paths sample at pixel centres (``align_corners=False``, like ``torch.nn.functional.
interpolate`` and ``cv2.INTER_LINEAR``), so a mask lands on the pixels it was computed for.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def cv2_or_none():
    """OpenCV if installed (imported on first use: the runtime does not need it)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an ``(h, w, C)`` array to ``(height, width, C)``, same dtype."""
    if image.shape[:2] == (height, width):
        return image
    cv2 = cv2_or_none()
    # OpenCV takes at most 512 channels (CV_CN_MAX); a model with more classes uses numpy.
    if cv2 is not None and image.shape[2] <= 512:
        out = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        return out.reshape(height, width, image.shape[2])
    return _bilinear_numpy(image, height, width)


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an ``(h, w)`` class mask, sampling each output pixel's centre."""
    if mask.shape == (height, width):
        return mask
    cv2 = cv2_or_none()
    if cv2 is not None and mask.dtype in (np.uint8, np.uint16):
        return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    rows = _nearest_centres(height, mask.shape[0])
    cols = _nearest_centres(width, mask.shape[1])
    return mask[rows[:, None], cols]


def _nearest_centres(out_size: int, in_size: int) -> np.ndarray:
    # Source index of each output pixel centre: floor((i + 0.5) * in / out), in exact integers.
    return ((2 * np.arange(out_size) + 1) * in_size) // (2 * out_size)


def _bilinear_numpy(image: np.ndarray, height: int, width: int) -> np.ndarray:
    y0, y1, wy = _linear_taps(height, image.shape[0])
    x0, x1, wx = _linear_taps(width, image.shape[1])
    src = image.astype(np.float32, copy=False)
    rows = src[y0] * (1 - wy)[:, None, None] + src[y1] * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype, copy=False)


def _linear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two source indices and the weight of the second, per output position (half-pixel centres)."""
    centre = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    centre = np.clip(centre, 0, in_size - 1)
    low = np.floor(centre).astype(np.intp)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (centre - low).astype(np.float32)
