"""Image files to RGB uint8 arrays: the one reader of the CLI, the Python API and the datasets.

OpenCV decodes (numpy + OpenCV only: no torch, no Pillow), once per file, straight to RGB:
- EXIF orientation is applied (a phone photo comes out as it is displayed), unless
  ``orientation=False`` (datasets: a mask is stored pixel-aligned with the stored image).
- Grayscale and palette files become RGB; an alpha channel is dropped.
- 16-bit files are scaled to 8 bits (``round(v / 257)``: 65535 -> 255), never saturated; float
  files (TIFF, EXR) must hold values in [0, 1] and are scaled by 255, as the array API does.
- The pixel count is read from the file's header before anything is decoded (PNG, JPEG, GIF,
  BMP; Pillow's lazy header read for other formats where Pillow is installed), so a
  decompression bomb (a small file that claims gigapixels) is refused without allocating it.

Every failure is an :class:`~edgeseg.runtime.errors.ImageFileError` naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import numpy as np

from edgeseg.runtime.errors import ImageFileError
from edgeseg.runtime.images import MAX_IMAGE_PIXELS, check_image

#: Suffixes read as images by the CLI when it is given a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_HEADER_BYTES = 1 << 16  # JPEG's frame header usually sits after EXIF/ICC segments


def read_image(path: str | os.PathLike[str], *, orientation: bool = True,
               max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """The image file at ``path`` as a C-contiguous (H, W, 3) uint8 RGB array."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ImageFileError(f"image {path} {what}; give an image file (PNG, JPEG, ...)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageFileError(f"image {path} cannot be read ({exc.strerror}); check its permissions") from exc
    return decode_image(data, name=str(path), orientation=orientation, max_pixels=max_pixels)


def decode_image(data: bytes, *, name: str = "image", orientation: bool = True,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Encoded image bytes (any format OpenCV reads) as an (H, W, 3) uint8 RGB array."""
    cv2 = _cv2()
    if not data:
        raise ImageFileError(f"{name} is empty (0 bytes); the file was not written completely")
    size = header_size(data)
    if size is not None:
        _check_pixels(name, *size, max_pixels)
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH
    if not orientation:
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    try:
        with _opencv_quiet(cv2):  # its decoders print "[ERROR:0@...]" lines; our error says it
            image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:  # OpenCV's own limits (e.g. OPENCV_IO_MAX_IMAGE_PIXELS)
        raise ImageFileError(f"{name} could not be decoded ({_first_line(exc)})") from exc
    if image is None:
        raise ImageFileError(
            f"{name} is not an image OpenCV can read (truncated, corrupted, or not an image format); "
            "give a PNG, JPEG, BMP, WebP or TIFF file"
        )
    _check_pixels(name, image.shape[0], image.shape[1], max_pixels)
    image = image[..., ::-1]  # BGR -> RGB (a view; made contiguous below)
    return _to_uint8(image, name, max_pixels)


def _to_uint8(image: np.ndarray, name: str, max_pixels: int) -> np.ndarray:
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        return np.rint(image.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if image.dtype.kind == "f":
        try:
            return check_image(np.ascontiguousarray(image), max_pixels=max_pixels)
        except ImageFileError:
            raise
        except Exception as exc:  # ImageValueError: NaN or values outside [0, 1]
            raise ImageFileError(f"{name}: a float image; {exc}") from exc
    raise ImageFileError(
        f"{name} stores {image.dtype} pixels; save it as an 8- or 16-bit PNG/JPEG (or a float TIFF in [0, 1])"
    )


def _check_pixels(name: str, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise ImageFileError(
            f"{name} is {height}x{width} = {height * width / 1e6:.0f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.0f} (a decompression bomb, or a scan far larger than a camera frame); "
            "downscale it first, or raise max_pixels"
        )


def header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG, JPEG, GIF or BMP header (Pillow's for other formats, where
    installed), or None when the header does not say (OpenCV then decodes and fails or not)."""
    head = data[:_HEADER_BYTES]
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24 and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return height, width
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return height, width
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(height), abs(width)
    return _pillow_size(data)


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    # Walk the marker segments to the first start-of-frame (SOF0..SOF15 except DHT/JPG/DAC).
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        (length,) = struct.unpack(">H", head[pos + 2:pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[pos + 5:pos + 9])
            return height, width
        pos += 2 + length
    return None


def _pillow_size(data: bytes) -> tuple[int, int] | None:
    try:
        import io

        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            width, height = img.size
            return height, width
    except Image.DecompressionBombError as exc:  # over twice Pillow's own limit
        raise ImageFileError(f"image refused as a decompression bomb ({exc})") from exc
    except Exception:  # noqa: BLE001 (not a format Pillow knows: OpenCV decides)
        return None


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise ImageFileError(
            "reading image files needs OpenCV: pip install opencv-python-headless"
        ) from exc
    return cv2


@contextlib.contextmanager
def _opencv_quiet(cv2):
    """OpenCV's log silenced for one call (``edgeseg --verbose`` leaves it on)."""
    from edgeseg.quiet import verbose

    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None or verbose():
        yield
        return
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
