"""What the runtime accepts as an image, decided once for every backend.

Accepted:
- ``uint8`` arrays of shape ``(H, W, 3)``, RGB (or BGR with ``bgr=True``, as OpenCV reads them).
- float arrays (float16/32/64) of shape ``(H, W, 3)`` with values in [0, 1] (scikit-image,
  matplotlib): scaled by 255 and rounded to uint8, the precision a camera gives anyway.
- Non-contiguous arrays (crops, flips, channel-reversed views): copied to contiguous memory
  first, so they give exactly the mask of the same pixels in a fresh array.

Refused with a typed error that says what to do (never guessed, since a guess would give a wrong
mask without a word): grayscale ``(H, W)``/``(H, W, 1)`` and RGBA ``(H, W, 4)`` (the models are
trained on RGB; replicate or drop the channel yourself, knowing what it means for your camera),
channel-first ``(3, H, W)``, batches (use ``predict_batch``), other dtypes (uint16, int, bool),
NaN/inf or out-of-range floats, empty images, images under :data:`MIN_IMAGE_SIDE` pixels on a
side (a sign of a wrong axis order, and nothing to segment), and images over
``max_pixels`` (:data:`MAX_IMAGE_PIXELS` by default: the resize would need gigabytes).
"""

from __future__ import annotations

import numpy as np

from edgeseg.runtime.errors import (
    ImageChannelsError,
    ImageDtypeError,
    ImageSizeError,
    ImageValueError,
)

#: Smallest height/width accepted. Below this there is nothing to segment, and such a side
#: usually means the axes are in the wrong order.
MIN_IMAGE_SIDE = 8
#: Largest image accepted by default (100 megapixels, e.g. 10000 x 10000); raise
#: ``seg.max_image_pixels`` to allow more.
MAX_IMAGE_PIXELS = 100_000_000


def check_image(image: object, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Return ``image`` as a C-contiguous ``(H, W, 3)`` uint8 array, or raise an ImageError."""
    if not isinstance(image, np.ndarray):
        raise ImageDtypeError(
            f"expected a numpy array of shape (H, W, 3), got {type(image).__name__}; "
            "convert it with np.asarray(image) (PIL: np.asarray(img.convert('RGB')))"
        )
    _check_shape(image.shape)
    _check_size(image.shape, max_pixels)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype.kind == "f":
        return _float_to_uint8(image)
    raise ImageDtypeError(
        f"image dtype {image.dtype} is not supported; give uint8 pixels 0..255 or floats in [0, 1] "
        "(16-bit: (image >> 8).astype(np.uint8))"
    )


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) == 4:
        raise ImageChannelsError(
            f"image has shape {shape}, a batch; predict() takes one (H, W, 3) image, "
            "use predict_batch(list_of_images) for several"
        )
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        raise ImageChannelsError(
            f"image has shape {shape}, a grayscale image; the model takes RGB (H, W, 3). If that is "
            "what you mean, replicate it: np.repeat(gray.reshape(h, w, 1), 3, axis=2)"
        )
    if len(shape) == 3 and shape[2] == 4:
        raise ImageChannelsError(
            f"image has shape {shape}, RGBA; the model takes RGB (H, W, 3). Drop the alpha channel "
            "with image[..., :3] (or composite it onto a background first)"
        )
    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
        raise ImageChannelsError(
            f"image has shape {shape}, which looks channel-first; give (H, W, 3), "
            "e.g. np.transpose(image, (1, 2, 0))"
        )
    if len(shape) != 3 or shape[2] != 3:
        raise ImageChannelsError(f"image has shape {shape}; give an RGB image of shape (H, W, 3)")


def _check_size(shape: tuple[int, ...], max_pixels: int) -> None:
    height, width = shape[:2]
    if height == 0 or width == 0:
        raise ImageSizeError(f"image of shape {shape} is empty; check the camera or file read")
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ImageSizeError(
            f"image is {height}x{width} pixels; at least {MIN_IMAGE_SIDE} per side is needed (a side "
            "this small usually means the array's axes are in the wrong order)"
        )
    if height * width > max_pixels:
        raise ImageSizeError(
            f"image is {height}x{width} = {height * width / 1e6:.0f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.0f}; downscale it first (cv2.resize), or raise seg.max_image_pixels"
        )


def _float_to_uint8(image: np.ndarray) -> np.ndarray:
    if not np.isfinite(image).all():
        raise ImageValueError(
            "float image contains NaN or infinity; fix the values upstream (np.nan_to_num)"
        )
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 1.0:
        hint = " (it looks like 0..255: use image.astype(np.uint8))" if high <= 255 and low >= 0 else ""
        raise ImageValueError(
            f"float image values span [{low:g}, {high:g}]; float images must be in [0, 1]{hint}"
        )
    return np.rint(image.astype(np.float32) * 255.0).astype(np.uint8)
