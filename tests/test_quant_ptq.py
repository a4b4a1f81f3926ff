"""Int8 PTQ per target on a tiny trained model: real files converted, run, gated."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgeseg.converters import convert
from edgeseg.errors import ConfigError
from edgeseg.quantization.errors import AccuracyGateError
from edgeseg.quantization.options import QuantOptions
from edgeseg.quantization.tflite_inspect import delegate_report
from quant_helpers import SIZE, tiny_checkpoint, untrained_checkpoint

FAST = dict(calib_size=8, gate_images=8)


@pytest.fixture()
def checkpoint():
    return tiny_checkpoint()


def _images(count=3, seed=0):
    from edgeseg.data.synthetic import SyntheticDataset

    data = SyntheticDataset("day", "test", size=SIZE, length=count, seed=seed)
    return [data[i].image for i in range(count)]


def _agreement(a, b, images):
    return float(np.mean([np.mean(a.predict(im) == b.predict(im)) for im in images]))


def test_onnx_int8_is_qdq_per_channel_and_gated(checkpoint, tmp_path):
    from edgeseg.quantization.gate import gate_int8_file
    from edgeseg.runtime import load

    result = convert(checkpoint, "onnx", precision="int8", quant=QuantOptions(**FAST), out=tmp_path / "m.onnx")
    model = onnx.load(str(result.path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    int8_weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert int8_weights, "conv weights must be stored as int8"
    # Per-channel: the weights' DequantizeLinear scales hold one value per output channel.
    scales = {i.name: i for i in model.graph.initializer}
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                   and n.input[0] in {w.name for w in int8_weights} and len(scales[n.input[1]].dims) == 1
                   and scales[n.input[1]].dims[0] > 1]
    assert per_channel
    session, reference = load(result.path), load(checkpoint)
    assert session.metadata.precision == "int8"
    assert session.metadata.extra["quantization"]["calib_size"] == 8
    assert "checksum verified at load" in session.describe()  # stamped after the int8 gate ran
    assert _agreement(session, reference, _images()) > 0.9
    # The gate is really applied: an impossible gate (bit-exact with float) rejects this file.
    with pytest.raises(AccuracyGateError, match="accuracy gate"):
        gate_int8_file(result.path, None, QuantOptions(**FAST, reference=str(checkpoint), min_agreement=1.0,
                                                       max_miou_drop=0.0))


def test_openvino_int8_smaller_keep_float_and_failed_gate_leaves_no_file(checkpoint, tmp_path):
    import openvino as ov

    from edgeseg.runtime import load

    int8 = convert(checkpoint, "openvino", precision="int8", quant=QuantOptions(**FAST), out=tmp_path / "q.xml").files[0]
    # The fp32 IR's .bin is the float weights (4 bytes each); the int8 one stores int8 weights
    # plus a scale per output channel (many for a model this narrow).
    assert int8.companions[0].stat().st_size < 0.75 * 4 * sum(p.numel() for p in _float_params(checkpoint))
    assert _agreement(load(int8.path), load(checkpoint), _images()) > 0.9
    # The int8 gate ran again with the float ops at bf16 where the CPU has it: the file records
    # bf16 only if it passed there, and the runtime then compiles at bf16.
    seg = load(int8.path, threads=1)
    checks = seg.metadata.extra.get("precision_checks", {})
    hint = str(seg.backend._compiled.get_property("INFERENCE_PRECISION_HINT"))
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        passed = isinstance(checks["bf16"], dict)
        assert seg.metadata.inference_precisions == (("fp32", "bf16") if passed else ("fp32",))
        assert ("bfloat16" in hint) == passed, hint
    else:
        assert seg.metadata.inference_precisions == ("fp32",) and not checks and "bfloat16" not in hint

    def fake_quantizers(path):
        return sum(op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(str(path)).get_ordered_ops())

    kept = convert(checkpoint, "openvino", precision="int8", out=tmp_path / "k.xml",
                   quant=QuantOptions(**FAST, keep_float=("classifier",))).files[0]
    assert 0 < fake_quantizers(kept.path) < fake_quantizers(int8.path)
    with pytest.raises(ConfigError, match="did you mean"):
        convert(checkpoint, "openvino", precision="int8", quant=QuantOptions(**FAST, keep_float=("clasifier",)),
                out=tmp_path / "x.xml")
    with pytest.raises(AccuracyGateError):
        convert(checkpoint, "openvino", precision="int8", out=tmp_path / "strict.xml",
                quant=QuantOptions(**FAST, min_agreement=1.0, max_miou_drop=0.0))
    assert not list(tmp_path.glob("strict*")) and not list(tmp_path.glob(".strict*"))


def test_tflite_full_int8_io(checkpoint, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgeseg.runtime import load

    # Float input (no normalization inside): the boundary becomes int8 in and out.
    result = convert(checkpoint, "tflite", precision="int8", include_preprocess=False,
                     quant=QuantOptions(**FAST, io="int8"), out=tmp_path / "m.tflite")
    interpreter = Interpreter(model_path=str(result.path))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert inp["quantization"][0] > 0 and out["quantization"][0] > 0
    ops = {d["op_name"] for d in interpreter._get_ops_details()}
    assert "CONV_2D" in ops and "DEPTHWISE_CONV_2D" in ops
    weights = [t for t in interpreter.get_tensor_details() if t["dtype"] == np.int8 and len(t["shape"]) == 4
               and len(t["quantization_parameters"]["scales"]) > 1]
    assert weights, "per-channel int8 conv weights expected"
    # Fully integer on XNNPACK: hard-swish and the squeeze-excitation hard-sigmoid as int8 ADD/MUL
    # (XNNPACK has no int8 HARD_SWISH), residual adds, gates, means and resizes int8, no
    # QUANTIZE/DEQUANTIZE anywhere (int8 in and out), one delegate partition, nothing left outside.
    report = delegate_report(result.path)
    assert "HARD_SWISH" not in report.ops and report.ops["MEAN"] > 0 and report.ops["RESIZE_BILINEAR"] > 0
    assert report.partitions == 1 and not report.outside, report.as_dict()
    assert report.ops["QUANTIZE"] == report.ops["DEQUANTIZE"] == 0, report.as_dict()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    checked = [op for op in interpreter._get_ops_details()
               if op["op_name"] in ("ADD", "MUL", "MEAN", "LOGISTIC", "RESIZE_BILINEAR")]
    assert all(tensors[i]["dtype"] == np.int8 for op in checked for i in (op["inputs"][0], op["outputs"][0]))
    assert _agreement(load(result.path), load(checkpoint), _images()) > 0.9
    # The default file normalizes inside: uint8 pixels stay its input (what MediaPipe feeds), and
    # --io int8 makes its output int8.
    pixels = convert(checkpoint, "tflite", precision="int8", quant=QuantOptions(**FAST, io="int8"),
                     out=tmp_path / "p.tflite")
    (inp,), (out,) = (Interpreter(model_path=str(pixels.path)).get_input_details(),
                      Interpreter(model_path=str(pixels.path)).get_output_details())
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (0.0, 0) and out["dtype"] == np.int8
    # Its only non-int8 ops are the input's CAST and QUANTIZE (the boundary, outside XNNPACK's one partition).
    report = delegate_report(pixels.path)
    assert report.partitions == 1 and report.outside == {"CAST": 1} and not report.inner_qdq, report.as_dict()
    assert report.ops["QUANTIZE"] == 1 and report.ops["DEQUANTIZE"] == 0
    assert _agreement(load(pixels.path), load(checkpoint), _images()) > 0.9


def test_tflite_keep_float_leaves_that_layers_ops_float(checkpoint, tmp_path):
    """--keep-float on TFLite: the layer's convolution keeps float weights and its activation runs
    float (litert-torch's own per-module setting matched nothing on torch 2.13 export graphs)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeseg.checkpoint import load_model
    from edgeseg.runtime import load

    def float_conv_weights(path):
        interpreter = Interpreter(model_path=str(path))
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        return [tensors[op["inputs"][1]]["shape"].tolist() for op in interpreter._get_ops_details()
                if op["op_name"] == "CONV_2D" and tensors[op["inputs"][1]]["dtype"] == np.float32]

    kept = convert(checkpoint, "tflite", precision="int8", out=tmp_path / "k.tflite",
                   quant=QuantOptions(calib_size=4, gate_images=2, keep_float=("backbone.0",)))
    stem = load_model(checkpoint).backbone[0][0]  # the one float CONV_2D; every other conv is int8
    assert float_conv_weights(kept.path) == [[stem.out_channels, *stem.kernel_size, stem.in_channels]]
    report = delegate_report(kept.path)
    assert report.ops.get("HARD_SWISH") == 1 and report.partitions == 1, report.as_dict()
    assert _agreement(load(kept.path), load(checkpoint), _images()) > 0.9


def test_int8_gate_compares_with_float_at_the_files_input_size(checkpoint, tmp_path, monkeypatch):
    """A file converted at another size than the model's is gated against the float model run at
    the file's size, on images drawn at that size (not against the model at its own size, on
    images the file would upsample)."""
    import edgeseg.validate as harness
    from edgeseg.checkpoint import read_checkpoint_header

    size = tuple(read_checkpoint_header(checkpoint)[1].input_size)
    bigger = (2 * size[0], 2 * size[1])
    seen, real = [], harness.validate

    def spy(files, reference, *args, **kwargs):
        seen.append((tuple(read_checkpoint_header(reference)[1].input_size), tuple(kwargs["data_options"]["size"])))
        return real(files, reference, *args, **kwargs)

    monkeypatch.setattr(harness, "validate", spy)
    result = convert(checkpoint, "onnx", precision="int8", input_size=bigger, quant=QuantOptions(**FAST),
                     out=tmp_path / "big.onnx")
    assert seen == [(bigger, bigger)]
    assert result.files[0].path.exists()


def _float_params(checkpoint):
    from edgeseg.checkpoint import load_model

    return list(load_model(checkpoint).parameters())


def test_int8_options_are_checked_per_target(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="TFLite option"):
        convert(checkpoint, "onnx", precision="int8", quant=QuantOptions(io="int8"), out=tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="openvino only"):
        convert(checkpoint, "tflite", precision="int8", quant=QuantOptions(accuracy_control=True), out=tmp_path / "m.tflite")
    with pytest.raises(ConfigError, match="--io"):
        QuantOptions(io="int4")
    with pytest.raises(ConfigError, match="calib-size"):
        QuantOptions(calib_size=0)
    with pytest.raises(ConfigError, match="fewer than --calib-size|holds"):
        from edgeseg.quantization.calibration import calibration_inputs
        from edgeseg.checkpoint import read_checkpoint_header

        meta = read_checkpoint_header(checkpoint)[1]
        calibration_inputs("folder:/nonexistent", 4, meta)
    assert not list(tmp_path.iterdir())


def test_int8_check_images_come_from_the_held_out_data():
    from edgeseg.quantization.calibration import held_out_images
    from edgeseg.quantization.options import QuantOptions

    spec = QuantOptions(calibration="synthetic:train").gate_spec
    assert spec == "synthetic:val"
    images = held_out_images(spec, 3, SIZE)
    train = held_out_images("synthetic:train", 3, SIZE)
    assert len(images) == 3 and all(i.shape == (*SIZE, 3) and i.dtype == np.uint8 for i in images)
    assert not any(np.array_equal(a, b) for a in images for b in train)  # held out, not calibration


def test_openvino_int8_matmuls_keep_float_activations_and_int8_weights(tmp_path):
    # SegFormer's linears lose accuracy with int8 activations (quantization/openvino.py): their
    # inputs stay float, their weights are still stored int8; convolutions get both.
    import openvino as ov

    ckpt = untrained_checkpoint("segformer_b0", tmp_path)
    quant = QuantOptions(calib_size=4, gate_images=4, max_miou_drop=100.0, min_agreement=0.0)
    path = convert(ckpt, "openvino", precision="int8", quant=quant, out=tmp_path / "q.xml").files[0].path
    ops = ov.Core().read_model(str(path)).get_ordered_ops()

    def source(op, port):
        return op.input(port).get_source_output().get_node()

    matmuls = [op for op in ops if op.get_type_name() == "MatMul"]
    convs = [op for op in ops if op.get_type_name() == "Convolution"]
    assert matmuls and convs
    assert not any(source(op, port).get_type_name() == "FakeQuantize" for op in matmuls for port in (0, 1))
    assert any(source(op, 0).get_type_name() == "FakeQuantize" for op in convs)

    def weight_constant(op):  # int8 weights: Constant -> Convert -> [Subtract] -> Multiply -> MatMul
        node = source(op, 1)
        while node.get_type_name() in ("Multiply", "Convert", "Subtract", "Reshape", "Transpose"):
            node = node.input(0).get_source_output().get_node()
        return node if node.get_type_name() == "Constant" else None

    linear_weights = [w for w in map(weight_constant, matmuls) if w is not None]
    assert linear_weights and all(w.get_element_type() == ov.Type.i8 for w in linear_weights)


def _float_ir(name: str):
    """The tiny model's float OpenVINO model, as the int8 exporter makes it from torch.export."""
    import openvino as ov
    import torch

    from edgeseg.models import create_model, tiny_config

    net = create_model(name, num_classes=4, **tiny_config(name)).eval()
    with torch.no_grad():
        return ov.convert_model(torch.export.export(net, (torch.randn(1, 3, *SIZE),), strict=False))


def _nncf_ops(model) -> list:
    """The ops of ``model`` after edgeseg's NNCF quantization on 2 random inputs (no gate)."""
    from edgeseg.quantization.openvino import quantize_model

    inputs = [np.random.default_rng(i).standard_normal((1, 3, *SIZE)).astype(np.float32) for i in range(2)]
    return quantize_model(model, {}, inputs).get_ordered_ops()


def _quantized_input(op) -> bool:
    return op.input(0).get_source_output().get_node().get_type_name() == "FakeQuantize"


def test_openvino_int8_keeps_channel_expanding_group_convs_float():
    # Mobile-Former's depthwise convolutions that also expand the channels cost its int8 IR 2.66
    # mIoU points (quantization/openvino.expanding_group_convs): their inputs stay float, while
    # plain convolutions and plain depthwise ones keep their FakeQuantize. NNCF on the float IR
    # alone (the whole conversion, gate and all, is covered above).
    from edgeseg.quantization.openvino import expanding_group_convs

    model = _float_ir("mobileformer_lraspp_151m")
    ops = _nncf_ops(model)

    def per_group(op):
        shape = op.input(1).get_partial_shape()
        return shape[1].get_length(), shape[2].get_length()

    groups = [op for op in ops if op.get_type_name() == "GroupConvolution"]
    expanding = [op for op in groups if per_group(op) != (1, 1)]
    assert expanding and sorted(op.get_friendly_name() for op in expanding) == sorted(expanding_group_convs(model))
    assert not any(map(_quantized_input, expanding))
    assert all(map(_quantized_input, [op for op in groups if per_group(op) == (1, 1)]))
    assert any(_quantized_input(op) for op in ops if op.get_type_name() == "Convolution")


def test_openvino_int8_keeps_convs_over_layernorm_tokens_float():
    # SegFormer's attention spatial-reduction convolutions read LayerNorm-normalized tokens: with
    # int8 inputs its IR lost 0.5 mIoU (quantization/openvino.token_convs). They stay float like the
    # matmuls; the RGB patch embedding keeps its FakeQuantize.
    from edgeseg.quantization.openvino import token_convs

    model = _float_ir("segformer_b0")
    tokens = set(token_convs(model))
    ops = _nncf_ops(model)

    convs = [op for op in ops if op.get_type_name() == "Convolution"]
    reading_tokens = [op for op in convs if op.get_friendly_name() in tokens]
    reductions = [op for op in reading_tokens if tuple(op.get_attributes()["strides"]) != (1, 1)
                  and tuple(op.input(1).get_partial_shape().to_shape())[2:] == tuple(op.get_attributes()["strides"])]
    assert reductions, "the tiny SegFormer has no spatial-reduction convolution to check"
    assert not any(map(_quantized_input, reading_tokens))
    stem = next(op for op in convs if op.input(1).get_partial_shape()[1].get_length() == 3)
    assert stem.get_friendly_name() not in tokens and _quantized_input(stem)
