"""``edgeseg predict``: palette PNG masks equal to seg.predict, overlays, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from runtime_helpers import random_image

import edgeseg.runtime as rt

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgeseg", "predict", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_predict_writes_palette_masks_and_overlays(model_files, tmp_path):
    images = []
    for i, size in enumerate([(64, 80), (50, 40), (70, 70)]):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(random_image(*size, seed=i)).save(path)
        images.append(path)
    out = tmp_path / "masks"
    proc = run_cli(str(model_files["onnx"]), *map(str, images), "--out", str(out), "--overlay", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    seg = rt.load(model_files["onnx"], threads=1)
    for path in images:
        image = np.asarray(Image.open(path).convert("RGB"))
        png = Image.open(out / f"{path.stem}.png")
        assert png.mode == "P"
        mask = seg.predict(image)
        np.testing.assert_array_equal(np.asarray(png), mask)
        palette = np.asarray(png.getpalette()[: 3 * 4]).reshape(4, 3)
        np.testing.assert_array_equal(palette, np.asarray(seg.metadata.palette))
        overlay = np.asarray(Image.open(out / f"{path.stem}_overlay.png"))
        np.testing.assert_array_equal(overlay, seg.overlay(image, mask))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"img{i}.png" for i in range(3)] + [f"img{i}_overlay.png" for i in range(3)]
    )  # nothing else: no temporary files left behind


def test_predict_errors_are_clear(model_files, tmp_path):
    proc = run_cli(str(tmp_path / "missing.onnx"), str(tmp_path / "a.png"), "--out", str(tmp_path))
    assert proc.returncode == 2 and "missing.onnx does not exist" in proc.stderr
    Image.fromarray(random_image(40, 40)).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(random_image(40, 40)).save(tmp_path / "sub" / "a.png")
    proc = run_cli(str(model_files["onnx"]), str(tmp_path / "a.png"), str(tmp_path / "sub" / "a.png"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "would overwrite each other" in proc.stderr
    proc = run_cli(str(model_files["onnx_two_heads"]), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "pass domain=" in proc.stderr
    assert not (tmp_path / "o").exists()
