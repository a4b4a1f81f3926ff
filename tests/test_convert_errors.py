"""Failures: a refused op names op + layer + target + way out; no partial file is ever left;
a file that disagrees with PyTorch is not kept; bad requests raise clear errors; the CLI."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgeseg.converters import TARGETS, ConversionError, UnsupportedOpError, VerificationError, convert  # noqa: E402
from edgeseg.converters import verify as verify_module  # noqa: E402
from edgeseg.converters.verify import Tolerance  # noqa: E402
from edgeseg.errors import ConfigError, InputShapeError  # noqa: E402
from convert_helpers import TinySegModel  # noqa: E402

@pytest.mark.parametrize("target", list(TARGETS))
def test_unsupported_op_names_op_layer_target_and_leaves_no_file(target, tmp_path):
    out = tmp_path / f"odd{TARGETS[target].suffixes[0]}"
    with pytest.raises(UnsupportedOpError) as info:
        convert(TinySegModel(odd_op=True), target, out=out)
    err = info.value
    assert "linalg_inv" in err.op  # aten.linalg_inv(_ex): what the target saw
    assert err.layers == ("decoder",)  # the nn.Module path of the layer that called it
    assert err.target == target
    message = str(err)
    assert "linalg_inv" in message and "decoder" in message and target in message and "try --target" in message
    assert list(tmp_path.iterdir()) == []  # no output, no temporary


def test_a_file_that_disagrees_with_pytorch_is_not_kept(tmp_path, monkeypatch):
    # An impossible tolerance stands in for a broken conversion: the gate must refuse the file.
    monkeypatch.setitem(verify_module.TOLERANCES, "fp32", Tolerance(min_agreement=1.01, logit_atol=1e-3))
    out = tmp_path / "m.onnx"
    with pytest.raises(VerificationError) as info:
        convert(TinySegModel(), "onnx", out=out)
    assert "not kept" in str(info.value) and "agreement" in str(info.value)
    assert info.value.report.numerics_checked and not info.value.report.passed
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_survives_a_failed_conversion(tmp_path):
    out = tmp_path / "m.onnx"
    convert(TinySegModel(), "onnx", out=out)
    before = out.read_bytes()
    with pytest.raises(ConversionError):
        convert(TinySegModel(odd_op=True), "onnx", out=out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": "tensorrt"}, "unknown target 'tensorrt'; choose one of onnx"),
        ({"target": "onnx", "precision": "int4"}, "does not convert precision .int4."),
        ({"target": "onnx", "layout": "chw"}, "layout 'chw'"),
        ({"target": "onnx", "out": "model.tflite"}, "must end in .onnx"),
        ({"target": "onnx", "domain": "cityscapes"}, "single-domain model; leave --domain out"),
    ],
)
def test_bad_requests_raise_clear_errors(kwargs, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=match):
        convert(TinySegModel(), **kwargs)


def test_input_size_the_model_cannot_take():
    with pytest.raises(InputShapeError, match="multiples of 4"):
        convert(TinySegModel(), "onnx", input_size=(30, 32))


def test_argmax_refuses_more_classes_than_uint8_holds():
    with pytest.raises(ConfigError, match="at most 256 classes"):
        convert(TinySegModel(num_classes=300), "onnx", argmax=True)


def test_not_a_model():
    with pytest.raises(ConfigError, match="edgeseg model"):
        convert(object(), "onnx")


def test_cli_converts_a_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.cli import app
    from edgeseg.converters import read_metadata
    from edgeseg.models import create_model, tiny_config

    name = "lraspp_mobilenetv3_small"
    model = create_model(name, num_classes=3, **tiny_config(name))
    checkpoint = save_checkpoint(model, tmp_path / "small.safetensors")
    out = tmp_path / "small.xml"
    result = CliRunner().invoke(
        app, ["convert", str(checkpoint), "--target", "openvino", "--input-size", "64x96",
              "--layout", "nhwc", "--include-preprocess", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and out.exists() and out.with_suffix(".bin").exists()
    meta = read_metadata(out)
    assert meta.model == name and meta.input_size == (64, 96) and meta.layout == "nhwc"
    bad = CliRunner().invoke(app, ["convert", str(checkpoint), "--target", "onnx", "--precision", "int4"])
    assert bad.exit_code != 0
