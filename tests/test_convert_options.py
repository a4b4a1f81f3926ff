"""Options every target honours, checked by running the written file ourselves against the
PyTorch model (not the export wrapper): uint8 NHWC input with preprocessing inside, fp16,
argmax masks, multi-domain files; and the metadata read back equals what was written."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgeseg.runtime as rt  # noqa: E402
from edgeseg.converters import TARGETS, convert, read_metadata  # noqa: E402
from edgeseg.converters.verify import sample_images  # noqa: E402
from edgeseg.models import create_model, tiny_config  # noqa: E402
from convert_helpers import TinySegModel  # noqa: E402


def _run_file(target: str, converted, graph_like, x: np.ndarray) -> list[np.ndarray]:
    """The file's raw outputs for the graph input ``x``, from the runtime's backend alone (no
    pre/post-processing: the input is built by hand here)."""
    with rt.load(converted.path, threads=1) as seg:
        outputs = seg.backend.run(x)
        return [np.array(outputs[name]) for name in graph_like.output_names]


class _Names:
    """The graph's input and output names."""

    input_name = "image"

    def __init__(self, output_names) -> None:
        self.output_names = tuple(output_names)


def _torch_logits(model, image: np.ndarray) -> np.ndarray:
    meta = model.metadata
    x = (image.astype(np.float32) / 255 - np.float32(meta.mean)) / np.float32(meta.std)
    with torch.no_grad():
        out = model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
    return out.numpy()


def _has_fp16_weights(target: str, converted) -> bool:
    if target == "onnx":
        import onnx

        model = onnx.load(str(converted.path))
        return any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    if target == "tflite":
        from ai_edge_litert import schema_py_generated as schema

        model = schema.ModelT.InitFromPackedBuf(converted.path.read_bytes(), 0)
        return any(t.type == schema.TensorType.FLOAT16 for g in model.subgraphs for t in g.tensors)
    if target == "openvino":
        import openvino as ov

        model = ov.Core().read_model(str(converted.path))
        return any(
            op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.f16
            for op in model.get_ops()
        )
    return "fp16" in str(_coreml_program(converted))


def _coreml_program(converted):
    import coremltools as ct

    return ct.models.MLModel(str(converted.path), skip_model_load=True).get_spec().mlProgram


# CoreML's default image input (ImageType) is NCHW with the normalization inside; these tests ask
# for other inputs, which CoreML takes as a tensor.
_TENSOR_INPUT = {"coreml": {"coreml_input": "tensor"}}


@pytest.mark.parametrize("target", list(TARGETS))
def test_fp16_nhwc_uint8_input_with_preprocessing_inside(target, tmp_path):
    model = TinySegModel()
    spec = TARGETS[target]
    result = convert(
        model, target, precision="fp16", layout="nhwc", include_preprocess=True,
        input_size=(32, 48), out=tmp_path / f"m{spec.suffixes[0]}", **_TENSOR_INPUT.get(target, {}),
    )
    converted = result.files[0]
    meta = read_metadata(converted.path)
    assert meta == converted.metadata
    assert (meta.precision, meta.layout, meta.include_preprocess, meta.input_size) == ("fp16", "nhwc", True, (32, 48))
    assert _has_fp16_weights(target, converted)
    if not spec.runs_here():
        assert meta.extra.get("image_dtype") == spec.pixel_dtype
        assert not converted.report.numerics_checked
        return
    image = sample_images(32, 48, count=2, seed=5)[0]
    (logits,) = _run_file(target, converted, _Names(["logits"]), image[None].astype(spec.pixel_dtype))
    assert logits.shape == (1, 32, 48, 5) and logits.dtype == np.float32
    expected = _torch_logits(model, image).transpose(0, 2, 3, 1)
    assert np.mean(logits.argmax(-1) == expected.argmax(-1)) >= 0.995
    assert np.abs(logits - expected).max() < 0.02 * max(1.0, np.abs(expected).max())


@pytest.mark.parametrize("target", list(TARGETS))
def test_argmax_mask_output(target, tmp_path):
    model = TinySegModel()
    spec = TARGETS[target]
    # NCHW float input on every target (TFLite's default is NHWC uint8: asked for explicitly here).
    converted = convert(model, target, argmax=True, layout="nchw", include_preprocess=False,
                        out=tmp_path / f"m{spec.suffixes[0]}", **_TENSOR_INPUT.get(target, {})).files[0]
    assert read_metadata(converted.path).argmax is True
    assert converted.report.passed
    if not spec.runs_here():
        assert converted.metadata.extra.get("mask_dtype") == spec.mask_dtype
        return
    image = sample_images(32, 32, count=1, seed=3)[0]
    meta = model.metadata
    x = ((image.astype(np.float32) / 255 - np.float32(meta.mean)) / np.float32(meta.std)).transpose(2, 0, 1)[None]
    (mask,) = _run_file(target, converted, _Names(["mask"]), np.ascontiguousarray(x, dtype=np.float32))
    assert mask.shape == (1, 32, 32) and mask.dtype == np.uint8
    assert np.mean(mask == _torch_logits(model, image).argmax(1)) >= 0.999
    if target == "tflite":  # NHWC inside: one ARG_MAX over the innermost axis, no TRANSPOSE first
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(converted.path))
        ops = [op["op_name"] for op in interpreter._get_ops_details()]
        assert ops.count("ARG_MAX") == 1, ops
        assert ops[ops.index("ARG_MAX") - 1] != "TRANSPOSE", ops


@pytest.fixture(scope="module")
def multidomain_model():
    name = "multidomain_lraspp_mobilenetv3_small"
    return create_model(name, num_classes=4, **tiny_config(name)).eval()


@pytest.mark.parametrize("target", ["onnx", "tflite", "openvino"])
def test_multidomain_one_file_has_a_named_output_per_domain(target, multidomain_model, tmp_path):
    spec = TARGETS[target]
    domains = [d.name for d in multidomain_model.metadata.domains]
    argmax = target == "openvino"
    converted = convert(
        multidomain_model, target, input_size=(64, 64), argmax=argmax, layout="nchw", include_preprocess=False,
        out=tmp_path / f"m{spec.suffixes[0]}",
    ).files[0]
    kind = "mask" if argmax else "logits"
    names = {d: f"{kind}_{d}" for d in domains}
    assert read_metadata(converted.path).output_names == names
    x = torch.randn(1, 3, 64, 64)
    outs = _run_file(target, converted, _Names(names.values()), x.numpy())
    with torch.no_grad():
        expected = multidomain_model.multi_head_model()(x)
    for got, want in zip(outs, expected):
        if argmax:
            assert np.mean(got == want.argmax(1).numpy()) >= 0.999
        else:
            np.testing.assert_allclose(got, want.numpy(), atol=1e-3 * max(1.0, want.abs().max().item()))


def test_multidomain_one_file_per_domain(multidomain_model, tmp_path):
    meta = multidomain_model.metadata
    result = convert(multidomain_model, "onnx", input_size=(64, 64), domain="all", out=tmp_path / "md.onnx")
    assert [f.path.name for f in result.files] == [f"md_{d.name}.onnx" for d in meta.domains]
    x = torch.randn(1, 3, 64, 64)
    for info, converted in zip(meta.domains, result.files):
        read = read_metadata(converted.path)
        assert read.domain == info.name and read.classes == info.classes
        (logits,) = _run_file("onnx", converted, _Names(["logits"]), x.numpy())
        with torch.no_grad():
            want = multidomain_model.domain_model(info.name)(x).numpy()
        assert logits.shape == (1, len(info.classes), 64, 64)
        np.testing.assert_allclose(logits, want, atol=1e-3 * max(1.0, np.abs(want).max()))
