"""Int8 calibration on plain unlabelled images (issue 17): `--calibration images:PATH` / `folder:PATH`
without masks, the int8-vs-float agreement gate on held-out images, one mIoU-drop default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.errors import ConfigError
from edgeseg.quantization.calibration import HELD_OUT_EVERY, image_files, is_unlabelled
from edgeseg.quantization.errors import AccuracyGateError
from edgeseg.quantization.options import QuantOptions
from quant_helpers import tiny_checkpoint


def _frames(folder: Path, count: int, size=(72, 96), suffix=".jpg") -> Path:
    """``count`` camera-like frames (synthetic scenes, another size than the model's) as plain files."""
    from PIL import Image

    from edgeseg.data.synthetic import SyntheticDataset

    data = SyntheticDataset("day", "test", size=size, length=count, seed=5)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(data[i].image).save(folder / f"frame{i:03d}{suffix}")
    return folder


def test_unlabelled_specs_split_into_calibration_and_held_out(tmp_path):
    plain = _frames(tmp_path / "plain", 12, size=(16, 16))
    train, val = image_files(f"images:{plain}", "train"), image_files(f"images:{plain}", "val")
    assert len(val) == 12 // HELD_OUT_EVERY and len(train) + len(val) == 12 and not set(train) & set(val)
    # folder:PATH without masks/ is unlabelled too (images/ inside, train/ and val/ subfolders as splits).
    _frames(tmp_path / "layout" / "images" / "train", 3, size=(16, 16))
    _frames(tmp_path / "layout" / "images" / "val", 2, size=(16, 16), suffix=".png")
    spec = f"folder:{tmp_path / 'layout'}"
    assert is_unlabelled(spec) and len(image_files(spec, "train")) == 3 and len(image_files(spec, "val")) == 2
    assert not is_unlabelled("synthetic:train")
    options = QuantOptions(calibration=f"images:{plain}:train")
    assert options.gate_spec == f"images:{plain}:val" and not options.labelled
    with pytest.raises(ConfigError, match="labelled"):
        QuantOptions(calibration=f"images:{plain}", accuracy_control=True).check_target("openvino")
    with pytest.raises(ConfigError, match="is not a folder"):
        image_files(f"images:{tmp_path / 'nope'}", "train")


def test_one_default_miou_drop_for_convert_qat_and_validate():
    from edgeseg.cli.qat import MAX_MIOU_DROP, MIN_AGREEMENT
    from edgeseg.validate import Gates
    from edgeseg.validate.gates import DEFAULT_AGREEMENT

    assert QuantOptions().max_miou_drop == Gates().max_miou_drop == MAX_MIOU_DROP.default == 0.5
    assert QuantOptions().min_agreement == DEFAULT_AGREEMENT["int8"] == MIN_AGREEMENT.default
    # convert and qat take the same gate flags (and --calibration images:PATH) as validate's gates.
    import inspect

    from edgeseg.cli.convert import convert
    from edgeseg.cli.qat import CALIBRATION, qat

    for command in (convert, qat):
        params = inspect.signature(command).parameters
        assert params["max_miou_drop"].default is MAX_MIOU_DROP and params["min_agreement"].default is MIN_AGREEMENT
        assert params["calibration"].default is CALIBRATION and "images:PATH" in CALIBRATION.help


def test_cli_int8_calibrates_on_plain_images_and_gates_against_float(tmp_path):
    checkpoint = tiny_checkpoint()
    frames = _frames(tmp_path / "frames", 15)  # 12 calibrate, 3 held out
    out = tmp_path / "m.onnx"
    run = subprocess.run(
        [sys.executable, "-m", "edgeseg", "convert", str(checkpoint), "--target", "onnx", "--precision", "int8",
         "--calibration", f"images:{frames}", "--calib-size", "8", "--gate-images", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert out.is_file()
    # The report says which gate ran and what it measured.
    assert "int8 gate on 3 held-out unlabelled images" in run.stdout
    assert "int8 is compared with float" in run.stdout and "pixel agreement" in run.stdout
    assert "class share float/int8: road" in run.stdout

    from edgeseg.quantization.gate import gate_int8_file
    from edgeseg.runtime import load

    assert load(out).metadata.extra["quantization"]["calibration"] == f"images:{frames}"
    options = dict(calibration=f"images:{frames}", calib_size=8, gate_images=3, reference=str(checkpoint))
    report = gate_int8_file(out, None, QuantOptions(**options))
    assert not report.labelled and report.images == 3 and 0.9 < report.agreement <= 1.0
    assert abs(sum(f for f, _ in report.class_share.values()) - 1.0) < 1e-6
    # The gate is applied: bit-exact agreement with float is impossible for an int8 file.
    with pytest.raises(AccuracyGateError, match="held-out unlabelled images.*agrees with float"):
        gate_int8_file(out, None, QuantOptions(**options, min_agreement=1.0))
    # Labelled gate data keeps the mIoU gate, and the report prints float vs int8 mIoU.
    labelled = gate_int8_file(out, None, QuantOptions(calib_size=8, gate_images=4, reference=str(checkpoint),
                                                      max_miou_drop=100.0, min_agreement=0.0))
    assert labelled.labelled and "labelled images of synthetic:val: mIoU float" in labelled.summary()
    assert set(labelled.float_miou) == set(labelled.int8_miou) == {None}


def test_coreml_report_without_numerics_is_not_a_pass():
    from edgeseg.converters.verify import VerificationReport

    report = VerificationReport("coreml", "fp32", numerics_checked=False, metadata_matches=True,
                                note="CoreML runs on macOS only")
    assert report.passed  # the file is kept ...
    assert "PASS" not in report.summary() and "NOT verified here" in report.summary()  # ... but not called a pass
