"""ONNX int8 of LR-ASPP MobileNetV3: no float islands in ONNX Runtime's optimized graph.

quantize_static leaves hard-swish, hard-sigmoid and the squeeze-excitation mean as
DequantizeLinear -> float op -> QuantizeLinear; edgeseg.quantization.onnx rewrites them into forms
ONNX Runtime runs with int8 kernels. Checked on ONNX Runtime's own optimized graph, with the
float graph's outputs unchanged by the float rewrite and the int8 outputs unchanged by the QDQ one.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from quant_helpers import SIZE, tiny_checkpoint

ort = pytest.importorskip("onnxruntime")


def _session(model: onnx.ModelProto, tmp_path, name: str, *, optimized: bool = False):
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    if optimized:  # level EXTENDED: the QDQ fusions, not the machine-specific NCHWc layouts
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(tmp_path / f"{name}.optimized.onnx")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, (onnx.load(options.optimized_model_filepath) if optimized else None)


def _float_islands(model: onnx.ModelProto) -> list[str]:
    """Op types of the float nodes between a DequantizeLinear and a QuantizeLinear."""
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    islands = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        fed = any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in node.input)
        feeds = any(c.op_type == "QuantizeLinear" for out in node.output for c in consumers.get(out, []))
        if fed and feeds:
            islands.append(node.op_type)
    return islands


def test_lraspp_int8_has_no_float_islands_and_same_outputs(tmp_path):
    import torch

    from edgeseg.checkpoint import load_model
    from edgeseg.quantization.onnx import OPSET, compact, integer_islands, pool_as_global, quantize_qdq, slow_int8_convs

    net = load_model(tiny_checkpoint()).eval()
    sample = torch.rand(1, 3, *SIZE)
    program = torch.onnx.export(net, (sample,), dynamo=True, opset_version=OPSET, input_names=["image"],
                                output_names=["logits"], verbose=False)
    import onnxslim

    fp32 = onnxslim.slim(program.model_proto)
    rng = np.random.default_rng(0)
    images = [rng.uniform(-2, 2, (1, 3, *SIZE)).astype(np.float32) for _ in range(4)]

    # Float rewrite: ReduceMean over H, W -> GlobalAveragePool, same outputs.
    pooled = onnx.ModelProto.FromString(fp32.SerializeToString())
    assert pool_as_global(pooled) >= 3  # the squeeze-excitation blocks and the head's pooling
    assert "ReduceMean" not in {n.op_type for n in pooled.graph.node}
    # The RGB stem (3 input channels) is the one convolution left float (slow in int8 in ORT).
    stem = [n for n in pooled.graph.node if n.op_type == "Conv"][0]
    assert slow_int8_convs(pooled) == [stem.name]
    before, after = _session(fp32, tmp_path, "fp32")[0], _session(pooled, tmp_path, "pooled")[0]
    for x in images:
        np.testing.assert_allclose(after.run(None, {"image": x})[0], before.run(None, {"image": x})[0],
                                   rtol=1e-5, atol=1e-5)

    # QDQ as quantize_static writes it: ONNX Runtime leaves float islands.
    onnx.save(pooled, str(tmp_path / "src.onnx"))
    quantize_qdq(tmp_path / "src.onnx", tmp_path / "qdq.onnx", "image", images, [])
    qdq = onnx.load(str(tmp_path / "qdq.onnx"))
    stock, stock_optimized = _session(qdq, tmp_path, "stock", optimized=True)
    islands = _float_islands(stock_optimized)
    assert {"HardSigmoid", "Mul"} <= set(islands), islands  # hard-swish, decomposed by ONNX Runtime

    counts = integer_islands(qdq)
    assert counts["hard_swish"] >= 5 and counts["hard_sigmoid"] >= 3 and counts["float_output"] == 1, counts
    onnx.checker.check_model(qdq)
    rewritten, optimized = _session(qdq, tmp_path, "rewritten", optimized=True)
    # Every op but the head's bilinear upsample (ONNX Runtime runs linear Resize in float) is int8.
    assert _float_islands(optimized) == ["Resize"], _float_islands(optimized)
    ops = {n.op_type for n in optimized.graph.node}
    assert ops <= {"QuantizeLinear", "DequantizeLinear", "Resize", "Transpose", "QLinearConv", "QLinearAdd",
                   "QLinearMul", "QLinearGlobalAveragePool", "QLinearSigmoid"}, ops
    assert {"QLinearConv", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool"} <= ops, ops
    assert sum(n.op_type == "Resize" for n in optimized.graph.node) == 2  # head upsample, final upsample

    # The rewrite moves the int8 outputs by at most the hard-sigmoid's grid, not the argmax.
    for x in images:
        old, new = stock.run(None, {"image": x})[0], rewritten.run(None, {"image": x})[0]
        spread = float(old.max() - old.min())
        assert float(np.abs(new - old).max()) < 0.1 * spread
        assert np.mean(new.argmax(1) == old.argmax(1)) > 0.97

    # Compacting (zero points of 0 dropped, short names) is smaller and computes the same, fused alike.
    size = len(qdq.SerializeToString())
    done = compact(qdq)
    assert done["zero_points_dropped"] > 10 and len(qdq.SerializeToString()) < 0.95 * size
    onnx.checker.check_model(qdq)
    compacted, compacted_optimized = _session(qdq, tmp_path, "compacted", optimized=True)
    assert sorted(n.op_type for n in compacted_optimized.graph.node) == sorted(n.op_type for n in optimized.graph.node)
    for x in images:
        np.testing.assert_array_equal(compacted.run(None, {"image": x})[0], rewritten.run(None, {"image": x})[0])


def test_grouped_not_depthwise_and_rgb_convs_stay_float():
    """ONNX Runtime has no fast int8 kernel for them: the RGB stem, grouped convolutions and
    depthwise ones that expand the channels (Mobile-Former's) are left float; plain depthwise and
    plain convolutions are not."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.quantization.onnx import slow_int8_convs

    def conv(name, x, out, cin_per_group, cout, group):
        weight = numpy_helper.from_array(np.zeros((cout, cin_per_group, 1, 1), np.float32), f"{name}_w")
        return helper.make_node("Conv", [x, weight.name], [out], name=name, group=group), weight

    nodes, weights = zip(
        conv("stem", "x", "a", 3, 8, 1),
        conv("grouped", "a", "b", 4, 8, 2),  # 2 groups of 4 channels
        conv("depthwise", "b", "c", 1, 8, 8),
        conv("expanding", "c", "d", 1, 16, 8),  # depthwise with 2 outputs per channel
        conv("plain", "d", "y", 16, 8, 1),
    )
    graph = helper.make_graph(list(nodes), "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])], list(weights))
    assert slow_int8_convs(helper.make_model(graph)) == ["stem", "grouped", "expanding"]


def test_runtime_keeps_an_edgeseg_int8_files_float_convs_float(tmp_path):
    """ONNX Runtime quantizes the float weights of a conv between int8 tensors by itself
    (its WeightBiasQuantization transformer); for an edgeseg int8 file, whose float convs are
    float on purpose (slow_int8_convs), the runtime turns that off. Other files keep ORT's default."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.metadata import METADATA_KEY
    from edgeseg.runtime.onnx import OnnxBackend

    scale, zero = numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.uint8(128), "z")
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 1, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("Conv", ["xd", "w"], ["c"], name="expanding", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])],
                              [scale, zero, weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(model, str(foreign))
    helper.set_model_props(model, {METADATA_KEY: '{"precision": "int8"}'})
    ours = tmp_path / "edgeseg_int8.onnx"
    onnx.save(model, str(ours))

    def ops(path):
        return set(OnnxBackend(path, threads=1).placement()["CPUExecutionProvider"])

    assert "QLinearConv" in ops(foreign)  # ORT's default: the float weights quantized
    assert "Conv" in ops(ours) and "QLinearConv" not in ops(ours)


def test_compact_keeps_the_zero_points_onnx_runtime_needs_to_fuse_int8_gemm(tmp_path):
    """compact() drops the all-zero weight zero points of convolutions only: ONNX Runtime fuses a
    QDQ Gemm (Mobile-Former's token Linear layers) into its int8 QGemm only when they are named."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.quantization.onnx import compact, quantize_qdq

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
               for name, shape in (("cw", (8, 8, 3, 3)), ("gw", (6, 8)), ("gb", (6,)))]
    nodes = [
        helper.make_node("Conv", ["x", "cw"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["y"], name="gemm", transB=1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])], weights)
    src, dest = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    inputs = [rng.standard_normal((1, 8, 8, 8)).astype(np.float32) for _ in range(4)]
    quantize_qdq(src, dest, "x", inputs, [])
    qdq = onnx.load(str(dest))
    done = compact(qdq)
    assert done["zero_points_dropped"] == 1  # the conv's weight (it has no bias)
    onnx.checker.check_model(qdq)
    session, optimized = _session(qdq, tmp_path, "compacted", optimized=True)
    ops = {n.op_type for n in optimized.graph.node}
    assert {"QLinearConv", "QGemm"} <= ops and not {"Conv", "Gemm"} & ops, ops
    reference, _ = _session(onnx.load(str(dest)), tmp_path, "stock")
    for x in inputs:
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], reference.run(None, {"x": x})[0])


def test_attention_softmax_and_activation_matmuls_stay_float():
    """ONNX Runtime's int8 Softmax and activation x activation MatMul are slower than its float
    ones: attention_ops names them for quantize_static to leave float; a MatMul with a weight
    (a Linear layer) is not named."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.quantization.onnx import attention_ops

    weight = numpy_helper.from_array(np.zeros((8, 8), np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["q"], name="linear"),
        helper.make_node("Transpose", ["q"], ["kt"], name="t", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "q"], ["y"], name="context"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])], [weight])
    assert attention_ops(helper.make_model(graph)) == ["scores", "softmax", "context"]
