"""One image reader for the CLI, the API and the datasets: EXIF orientation, 16-bit and float
files scaled (not saturated), decompression bombs refused before decoding, typed errors."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from runtime_helpers import random_image

import edgeseg.runtime as rt
from edgeseg.runtime.imagefile import header_size, read_image

ROOT = Path(__file__).resolve().parents[1]
ORIENTATION = 0x0112


def _with_orientation(rgb: np.ndarray, path: Path, orientation: int, **save) -> Path:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(rgb).save(path, exif=exif.tobytes(), **save)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG signature and header claiming width x height RGB, with a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def test_exif_orientation_is_applied_like_a_photo_viewer(tmp_path):
    stored = random_image(64, 128, seed=3)
    for suffix, save in ((".png", {}), (".jpg", {"quality": 100, "subsampling": 0})):
        path = _with_orientation(stored, tmp_path / f"o6{suffix}", 6, **save)
        shown = read_image(path)
        # Orientation 6: the viewer rotates the stored pixels 90 degrees clockwise.
        expected = np.rot90(stored, k=-1)
        assert shown.shape == (128, 64, 3)
        assert np.abs(shown.astype(int) - expected).mean() < (0.01 if suffix == ".png" else 3.0)
        as_stored = read_image(path, orientation=False)
        assert as_stored.shape == (64, 128, 3)
    # Orientation 3 (upside down) keeps the size but not the pixels.
    path = _with_orientation(stored, tmp_path / "o3.png", 3)
    np.testing.assert_array_equal(read_image(path), stored[::-1, ::-1])


def test_16_bit_files_are_scaled_not_saturated(tmp_path):
    rgb8 = random_image(40, 48, seed=1)
    rgb16 = rgb8.astype(np.uint16) * 257  # 0..65535, exactly 257 x the 8-bit value
    cv2.imwrite(str(tmp_path / "c16.png"), np.ascontiguousarray(rgb16[..., ::-1]))
    np.testing.assert_array_equal(read_image(tmp_path / "c16.png"), rgb8)
    gray16 = np.linspace(0, 65535, 40 * 48).reshape(40, 48).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    got = read_image(tmp_path / "g16.png")
    expected = np.rint(gray16 / 257.0).astype(np.uint8)
    assert got.shape == (40, 48, 3)
    np.testing.assert_array_equal(got[..., 0], expected)
    assert len(np.unique(got)) > 200  # Pillow's convert("RGB") leaves {0, 255}


def test_float_tiff_in_unit_range_is_scaled_and_out_of_range_refused(tmp_path):
    rgb = random_image(32, 32, seed=2).astype(np.float32) / 255.0
    cv2.imwrite(str(tmp_path / "f.tiff"), np.ascontiguousarray(rgb[..., ::-1]))
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff"), np.rint(rgb * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "big.tiff"), np.full((32, 32, 3), 7.0, np.float32))
    with pytest.raises(rt.ImageFileError, match=r"big.tiff.*\[0, 1\]"):
        read_image(tmp_path / "big.tiff")


def test_grayscale_palette_and_rgba_files_become_rgb(tmp_path):
    gray = random_image(32, 40)[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), np.repeat(gray[..., None], 3, axis=2))
    rgba = np.dstack([random_image(32, 40), np.full((32, 40), 9, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgba[..., :3])
    pal = Image.fromarray((np.arange(32 * 40) % 3).reshape(32, 40).astype(np.uint8), mode="P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))


@pytest.mark.parametrize("side", [20_000, 100_000])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_bomb_png(side, side))
    assert header_size(path.read_bytes()) == (side, side)
    tracemalloc.start()
    with pytest.raises(rt.ImageFileError, match="megapixels.*decompression bomb"):
        read_image(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 * 2**20  # nothing image-sized was allocated


def test_jpeg_header_size_is_read_past_exif(tmp_path):
    path = _with_orientation(random_image(48, 80), tmp_path / "e.jpg", 1, quality=90)
    assert header_size(path.read_bytes()) == (48, 80)
    data = bytearray(path.read_bytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 5:sof + 9] = struct.pack(">HH", 60_000, 60_000)  # a frame that claims 3.6 gigapixels
    with pytest.raises(rt.ImageFileError, match="decompression bomb"):
        rt.read_image(_write(tmp_path / "bomb.jpg", bytes(data)))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bad_files_get_typed_errors(tmp_path):
    with pytest.raises(rt.ImageFileError, match="does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(rt.ImageFileError, match="is a folder"):
        read_image(tmp_path)
    with pytest.raises(rt.ImageFileError, match="empty"):
        read_image(_write(tmp_path / "empty.png", b""))
    with pytest.raises(rt.ImageFileError, match="not an image OpenCV can read"):
        read_image(_write(tmp_path / "text.png", b"hello, not an image" * 10))
    buf = io.BytesIO()
    Image.fromarray(random_image(64, 64)).save(buf, format="PNG")
    with pytest.raises(rt.ImageFileError, match="not an image OpenCV can read"):
        read_image(_write(tmp_path / "cut.png", buf.getvalue()[:200]))


def _predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeseg", "predict", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_predict_cli_segments_the_displayed_image_and_refuses_bombs(model_files, tmp_path):
    stored = random_image(48, 96, seed=5)
    photo = _with_orientation(stored, tmp_path / "phone.png", 6)
    (tmp_path / "bomb.png").write_bytes(_bomb_png(50_000, 50_000))
    out = tmp_path / "out"
    proc = _predict(str(model_files["onnx"]), str(photo), "--out", str(out), "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    mask = np.asarray(Image.open(out / "phone.png"))
    seg = rt.load(model_files["onnx"], threads=1)
    assert mask.shape == (96, 48)  # the displayed size, not the stored 48x96
    np.testing.assert_array_equal(mask, seg.predict(np.ascontiguousarray(np.rot90(stored, k=-1))))
    proc = _predict(str(model_files["onnx"]), str(tmp_path / "bomb.png"), "--out", str(tmp_path / "o2"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error:" in proc.stderr and "decompression bomb" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o2" / "bomb.png").exists()


def test_dataset_images_are_read_as_stored(tmp_path):
    from edgeseg.data.folder import load_folder

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    stored = random_image(32, 64, seed=7)
    _with_orientation(stored, tmp_path / "images" / "a.png", 6)
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(tmp_path / "masks" / "a.png")
    (tmp_path / "classes.yaml").write_text("classes: [road, car]\n")
    dataset = load_folder(tmp_path)
    sample = dataset[0]
    np.testing.assert_array_equal(sample.image, stored)  # pixel-aligned with the stored mask
