"""ONNX fp16 files are mixed precision: the op types in ``FP32_OPS`` (LayerNorm; the measurement
is in converters/onnx.py) compute in float32 between Casts, convs and matmuls in float16, and the
image input and logits stay float32. Checked on the saved file, then run against PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgeseg.converters import convert
from edgeseg.converters.onnx import FP32_OPS, OPSET, _to_mixed_fp16
from edgeseg.converters.verify import TOLERANCES, graph_input, sample_images
from edgeseg.models import create_model, tiny_config

# The model the block list was measured on, at tiny widths: its tokens pass through 33 LayerNorms.
MODEL = "mobileformer_lraspp_294m"
SIZE = (64, 64)


@pytest.fixture(scope="module")
def fp16_file(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=5, **tiny_config(MODEL)).eval()
    out = tmp_path_factory.mktemp("onnx_fp16") / "mobileformer.onnx"
    converted = convert(model, "onnx", precision="fp16", input_size=SIZE, out=out).files[0]
    return model, converted


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def test_fp32_ops_compute_in_float32_and_the_rest_in_float16(fp16_file):
    _, converted = fp16_file
    model = onnx.load(str(converted.path))
    types = _tensor_types(model)
    kept = [n for n in model.graph.node if n.op_type in FP32_OPS]
    assert len(kept) >= 10, "the tiny Mobile-Former should have a LayerNorm per token update"
    for node in kept:
        for name in filter(None, (*node.input, *node.output)):
            assert types.get(name) == TensorProto.FLOAT, f"{node.op_type} {node.name}: {name} is not float32"
    heavy = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    assert heavy and all(types.get(n.output[0]) == TensorProto.FLOAT16 for n in heavy)
    # A real fp16 file: nearly every weight stored as float16 (half the fp32 file).
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer]
    fp16_values = sum(w.size for w in weights if w.dtype == np.float16)
    float_values = sum(w.size for w in weights if w.dtype in (np.float16, np.float32))
    assert fp16_values / float_values > 0.97
    # The file contract: float32 image in, float32 logits out.
    assert [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)] == [TensorProto.FLOAT] * 2


def test_mixed_fp16_file_agrees_with_pytorch(fp16_file):
    model, converted = fp16_file
    session = ort.InferenceSession(str(converted.path), providers=["CPUExecutionProvider"])
    meta = converted.metadata
    inputs = [graph_input(img, meta) for img in sample_images(*SIZE, count=4, seed=11)]
    got = np.concatenate([session.run(["logits"], {"image": x})[0] for x in inputs])
    with torch.no_grad():
        want = np.concatenate([model(torch.from_numpy(x)).numpy() for x in inputs])
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.mean(got.argmax(1) == want.argmax(1)) >= TOLERANCES["fp16"].min_agreement
    # fp16 rounding moves logits by ~1e-3 relative; a misplaced Cast would move them far more.
    assert np.abs(got - want).max() < 1e-2 * max(1.0, np.abs(want).max())


def test_fp32_ops_sharing_an_fp16_input_get_one_cast():
    """Two LayerNorms and an Add share the bias ``b`` (slimming merges equal initializers, so the
    zoo's all-zero LayerNorm and Linear biases are one tensor): the Add takes it in fp16, each
    LayerNorm needs it in float32; the file must stay a valid graph that computes the same."""
    width = 8
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Add", ["x", "b"], ["h"]),
        helper.make_node("LayerNormalization", ["h", "s", "b"], ["n1"]),
        helper.make_node("LayerNormalization", ["n1", "s", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "shared_bias",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, width])],
        [numpy_helper.from_array(rng.normal(size=width).astype(np.float32), "b"),
         numpy_helper.from_array(rng.uniform(0.5, 2, width).astype(np.float32), "s")],
    )
    fp32 = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)
    mixed = _to_mixed_fp16(onnx.ModelProto.FromString(fp32.SerializeToString()))
    onnx.checker.check_model(mixed, full_check=True)
    types = _tensor_types(mixed)
    norms = [n for n in mixed.graph.node if n.op_type == "LayerNormalization"]
    assert len(norms) == 2 and all(types[i] == TensorProto.FLOAT for n in norms for i in n.input)
    x = rng.normal(size=(2, width)).astype(np.float32)
    want = ort.InferenceSession(fp32.SerializeToString()).run(None, {"x": x})[0]
    got = ort.InferenceSession(mixed.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-2)
