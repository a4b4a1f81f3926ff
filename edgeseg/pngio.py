"""Palette PNGs without Pillow: the runtime-only CLI writes class masks and reads label masks with
numpy, zlib and OpenCV (which decodes a palette PNG to colours, never to its indices).

- :func:`encode_palette_png`: an 8-bit palette PNG whose pixel values are the class ids and whose
  palette holds the class colours (what ``Image.fromarray(mask, "P").putpalette(...)`` writes).
- :func:`read_png_indices`: the stored values of a PNG mask; for a palette PNG its indices
  (OpenCV decodes the colours, which are mapped back through the file's PLTE table).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PALETTE_COLOUR_TYPE = 3


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_palette_png(mask: np.ndarray, palette: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of an ``(H, W)`` uint8 mask with ``palette`` (``(N, 3)`` uint8, N <= 256)."""
    mask = np.ascontiguousarray(mask, np.uint8)
    colours = np.asarray(palette, np.uint8).reshape(-1, 3)[:256]
    if mask.ndim != 2 or not len(colours):
        raise ValueError(f"need an (H, W) mask and 1..256 palette colours, got {mask.shape}, {colours.shape}")
    height, width = mask.shape
    rows = np.zeros((height, width + 1), np.uint8)  # filter type 0 (None) before each row
    rows[:, 1:] = mask
    header = struct.pack(">IIBBBBB", width, height, 8, _PALETTE_COLOUR_TYPE, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"PLTE", colours.tobytes())
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b""))


def png_palette(data: bytes) -> np.ndarray | None:
    """The ``(N, 3)`` PLTE table of a palette PNG (colour type 3), or None for any other PNG."""
    if not data.startswith(PNG_SIGNATURE) or len(data) < 33 or data[25] != _PALETTE_COLOUR_TYPE:
        return None
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"PLTE":
            table = np.frombuffer(data[pos + 8:pos + 8 + length], np.uint8)
            return table[: len(table) // 3 * 3].reshape(-1, 3)
        if kind == b"IDAT":
            return None  # PLTE must come before the image data
        pos += 12 + length
    return None


def read_png_indices(path: str | Path) -> np.ndarray:
    """The values a mask PNG stores, as OpenCV reads them; a palette PNG's indices.

    Palette colours that repeat make indices ambiguous; the lowest index of a colour is taken
    (label palettes give each class its own colour)."""
    import cv2

    data = Path(path).read_bytes()
    palette = png_palette(data)
    flag = cv2.IMREAD_COLOR if palette is not None else cv2.IMREAD_UNCHANGED
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if decoded is None:
        raise ValueError(f"{path} is not a readable PNG")
    if palette is None:
        return decoded[..., ::-1].copy() if decoded.ndim == 3 and decoded.shape[2] == 3 else decoded
    keys = palette.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
    rgb = decoded[..., ::-1].astype(np.uint32)
    pixels = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    unique_keys, first = np.unique(keys[::-1], return_index=True)  # reversed: lowest index wins
    lowest = (len(keys) - 1 - first).astype(np.uint8)
    where = np.searchsorted(unique_keys, pixels)
    where = np.minimum(where, len(unique_keys) - 1)
    if not np.array_equal(unique_keys[where], pixels):
        raise ValueError(f"{path}: a pixel colour is not in the PNG's palette")
    return lowest[where]
