"""Messages, defaults and docs a new user meets (issue 17, points 6 and 9), each through the CLI in a
subprocess: predict on a folder, bench on a missing file, a bad mask value under DataLoader
workers, train --help defaults, a short domain name, the README install line."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_helpers import SIZE, export_onnx, random_image, tiny_model

import edgeseg.runtime as rt

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps help text at the terminal width
    return subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=env)


def _images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(folder / f"im{i}.png")
        Image.fromarray(random_image(40, 48, seed=i)).save(paths[-1])
    return paths


def test_predict_takes_a_folder_of_images(model_files, tmp_path):
    paths = _images(tmp_path / "images", 3)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    out = tmp_path / "masks"
    run = cli("predict", str(model_files["onnx"]), str(tmp_path / "images"), "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["im0.png", "im1.png", "im2.png"]
    seg = rt.load(model_files["onnx"])
    np.testing.assert_array_equal(np.asarray(Image.open(out / "im1.png")), seg.predict(np.asarray(Image.open(paths[1]))))
    # The default palette PNG holds the ids (Pillow reads them) but OpenCV turns it into colours:
    # what --mask-format raw is for (test_predict_raw_masks_for_opencv_and_overlay_legend).
    import cv2

    assert cv2.imread(str(out / "im1.png"), cv2.IMREAD_UNCHANGED).ndim == 3
    (tmp_path / "empty").mkdir()
    run = cli("predict", str(model_files["onnx"]), str(tmp_path / "empty"), "--out", str(out))
    assert run.returncode == 2 and "holds no images" in run.stderr and "Traceback" not in run.stderr


def test_bench_says_why_a_file_has_no_timings(tmp_path):
    run = cli("bench", str(tmp_path / "nope.onnx"), "--no-cold-start", "--runs", "1", "--warmup", "0")
    assert run.returncode == 1
    assert "- **nope.onnx** (failed to load):" in run.stdout and "does not exist" in run.stdout


def test_bad_mask_value_under_loader_workers_is_a_typed_error_with_a_cli_remedy(tmp_path):
    from edgeseg.data.folder import write_folder
    from edgeseg.data.synthetic import SyntheticDataset

    data = SyntheticDataset("day", "train", size=(64, 64), length=4, seed=0)
    root = write_folder(data, tmp_path / "data")
    bad = sorted((root / "masks").iterdir())[1]
    mask = np.asarray(Image.open(bad)).copy()
    mask[:3, :3] = 77
    Image.fromarray(mask).save(bad)
    run = cli("train", "--data", f"folder:{root}", "--size", "64x64", "--iters", "2", "--batch-size", "4",
              "--workers", "1", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run"))
    assert run.returncode == 2, run.stderr[-3000:]
    assert f"{bad}: mask values [77]" in run.stderr
    assert "--data-option on_bad_labels=ignore" in run.stderr
    assert "Traceback" not in run.stderr and "DataLoader worker" not in run.stderr


def test_train_help_shows_the_defaults_a_run_uses():
    from edgeseg.cli.train import CONFIG_DEFAULTS
    from edgeseg.train.config import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    shown = {"data": "synthetic", "size": "128x256", "sync_bn": "no-sync-bn"}
    for name, value in CONFIG_DEFAULTS.items():
        if name == "iters":
            assert defaults["iters"] is None and defaults["epochs"] is None
        elif name in shown:
            assert value == shown[name] and defaults.get(name) in (("synthetic",), (128, 256), False)
        else:
            assert value == defaults[name], name
    run = cli("train", "--help")
    assert run.returncode == 0
    for expected in ("[default: (lraspp_mobilenetv3_small)]", "[default: (sgd)]", "[default: (0.02)]",
                     "[default: (128x256)]", "[default: (runs/train)]"):
        assert expected in run.stdout, expected


def test_short_domain_name_is_accepted_when_unambiguous(tmp_path):
    import torch

    from edgeseg.runtime.session import _short_domain

    assert _short_domain("night", ["synthetic_day", "synthetic_night"]) == "synthetic_night"
    assert _short_domain("synthetic", ["synthetic_day", "synthetic_night"]) is None  # ambiguous
    assert _short_domain("synthetic_day", ["synthetic_day", "synthetic_night"]) == "synthetic_day"
    model = tiny_model()
    night = export_onnx(model, torch.randn(1, 3, *SIZE), tmp_path / "night.onnx",
                        model.metadata.replace(domain="synthetic_night"))
    _images(tmp_path / "frames", 2)
    run = cli("demo", "--model", str(night), "--source", str(tmp_path / "frames"), "--domain", "night",
              "--max-frames", "2", "--threads", "1")
    assert run.returncode == 0, run.stderr[-2000:]
    run = cli("demo", "--model", str(night), "--source", str(tmp_path / "frames"), "--domain", "dusk")
    assert run.returncode == 2 and "leave --domain out" in run.stderr and "domain=<" not in run.stderr


def test_readme_install_line_is_not_redundant():
    text = (ROOT / "README.md").read_text()
    assert 'pip install "edgeseg[runtime-onnx]"' in text
    assert 'pip install edgeseg "edgeseg[' not in text


@pytest.fixture(autouse=True)
def _no_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)


def test_predict_raw_masks_for_opencv_and_overlay_legend(model_files, tmp_path):
    import cv2

    (tmp_path / "images").mkdir()
    paths = [tmp_path / "images" / "im0.png"]
    Image.fromarray(random_image(240, 320)).save(paths[0])  # room for the legend beside the picture
    image = np.asarray(Image.open(paths[0]))
    seg = rt.load(model_files["onnx"])
    mask = seg.predict(image)
    run = cli("predict", str(model_files["onnx"]), str(paths[0]), "--out", str(tmp_path / "raw"),
              "--mask-format", "raw", "--overlay", "--legend")
    assert run.returncode == 0, run.stderr[-2000:]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "raw" / "im0.png"), cv2.IMREAD_UNCHANGED), mask)
    drawn = np.asarray(Image.open(tmp_path / "raw" / "im0_overlay.png"))
    plain = seg.overlay(image, mask)
    assert not np.array_equal(drawn[:8, -8:], plain[:8, -8:])  # the legend, top right
    np.testing.assert_array_equal(drawn[-8:, :8], plain[-8:, :8])  # the rest is the overlay
    run = cli("predict", str(model_files["onnx"]), str(paths[0]), "--out", str(tmp_path / "x"), "--legend")
    assert run.returncode == 2 and "add --overlay" in run.stderr
