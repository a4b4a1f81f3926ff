"""ONNX fp16 files are mixed precision: the op types in ``FP32_OPS`` (LayerNorm) and the logits
head compute in float32 between Casts (the measurements are in converters/onnx.py), the other
convs and matmuls in float16, and the image input and logits stay float32. Checked on the saved
file, then run against PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeseg.converters import convert  # noqa: E402
from edgeseg.converters.onnx import FP32_OPS, HEAD_STARTS, OPSET, _to_mixed_fp16  # noqa: E402
from edgeseg.converters.verify import TOLERANCES, graph_input, sample_images  # noqa: E402
from edgeseg.models import create_model, tiny_config  # noqa: E402

# A Mobile-Former (the float32 parts were measured on two), at tiny widths: its tokens pass
# through 24 LayerNorms, and its random-init logits (< 1) sit where fp16's steps are coarse.
MODEL = "mobileformer_lraspp_26m"
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


def _head(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The nodes from each output back to the nearest classifier (a HEAD_STARTS op), included."""
    producer = {out: n for n in model.graph.node for out in n.output}
    head, todo = {}, [out.name for out in model.graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is not None and node.name not in head:
            head[node.name] = node
            if node.op_type not in HEAD_STARTS:
                todo += [name for name in node.input if name]
    return list(head.values())


def test_fp32_ops_and_the_head_compute_in_float32_and_the_rest_in_float16(fp16_file):
    _, converted = fp16_file
    model = onnx.load(str(converted.path))
    types = _tensor_types(model)
    kept = [n for n in model.graph.node if n.op_type in FP32_OPS]
    assert len(kept) >= 10, "the tiny Mobile-Former should have a LayerNorm per token update"
    head = _head(model)
    classifiers = [n for n in head if n.op_type in HEAD_STARTS]
    casts = [n.name for n in head if n.op_type == "Cast"]
    assert classifiers and not casts, f"the logits head rounds to fp16 at {casts}"
    for node in kept + head:
        for name in filter(None, (*node.input, *node.output)):
            if types.get(name) in (TensorProto.FLOAT, TensorProto.FLOAT16):
                assert types[name] == TensorProto.FLOAT, f"{node.op_type} {node.name}: {name} is not float32"
    heavy = [n for n in model.graph.node if n.op_type in HEAD_STARTS and n not in classifiers]
    assert heavy and all(types.get(n.output[0]) == TensorProto.FLOAT16 for n in heavy)
    # A real fp16 file: nearly every weight stored as float16 (half the fp32 file).
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer]
    fp16_values = sum(w.size for w in weights if w.dtype == np.float16)
    float_values = sum(w.size for w in weights if w.dtype in (np.float16, np.float32))
    assert fp16_values / float_values > 0.95
    # The file contract: float32 image in, float32 logits out.
    assert {v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)} == {TensorProto.FLOAT}


def test_mixed_fp16_file_agrees_with_pytorch(fp16_file):
    model, converted = fp16_file
    session = ort.InferenceSession(str(converted.path), providers=["CPUExecutionProvider"])
    names = ["logits"]
    inputs = [graph_input(img, converted.metadata) for img in sample_images(*SIZE, count=4, seed=11)]
    runs = [session.run(names, {"image": x}) for x in inputs]
    with torch.no_grad():
        wants = [[model(torch.from_numpy(x))] for x in inputs]
    for k in range(len(names)):
        got = np.concatenate([run[k] for run in runs])
        want = np.concatenate([w[k].numpy() for w in wants])
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.mean(got.argmax(1) == want.argmax(1)) >= TOLERANCES["fp16"].min_agreement
        # fp16 rounding moves logits by ~1e-3 relative; a misplaced Cast would move them far more.
        assert np.abs(got - want).max() < 1e-2 * max(1.0, np.abs(want).max())
        # A float32 head: the logits are not rounded to fp16's steps, which would tie near classes.
        on_fp16_grid = got == got.astype(np.float16).astype(np.float32)
        assert on_fp16_grid.mean() < 0.1


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
