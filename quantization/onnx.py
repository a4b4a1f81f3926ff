"""ONNX int8: static QDQ quantization with onnxruntime.quantization, per-channel int8 weights and
uint8 activations.

The fp32 graph comes from the same dynamo exporter as the fp32 target; ``--keep-float`` layers are
found through the exporter's ``name_scopes`` node metadata and excluded from quantization. The
image input and the logits output stay float (QDQ files keep float I/O by design).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxslim
import torch

from edgeseg.converters.onnx import OPSET
from edgeseg.metadata import METADATA_KEY
from edgeseg.quantization.calibration import calibration_inputs
from edgeseg.quantization.gate import gate_int8_file
from edgeseg.quantization.layers import check_layers, graph_path, in_layers, reference_model


def export(graph, files: tuple[Path, ...], options) -> None:
    """Write the int8 QDQ file of ``graph`` to ``files[0]`` after it passes the accuracy gate."""
    quant = options.quant
    net = reference_model(graph, quant.keep_float)
    check_layers(net, quant.keep_float)
    graph.metadata = graph.metadata.replace(extra={**graph.metadata.extra, "quantization": {
        "scheme": "onnxruntime QDQ static, int8 per-channel symmetric weights, "
                  "uint8 per-tensor asymmetric activations (U8S8), RGB stem convolution and attention "
                  "(softmax, activation x activation matmuls) float",
        **quant.describe()}})
    inputs = calibration_inputs(quant.calibration, quant.calib_size, graph.metadata, graph.sample.numpy().dtype)
    with tempfile.TemporaryDirectory(dir=files[0].parent, prefix=".int8-") as scratch:
        fp32, int8 = Path(scratch) / "fp32.onnx", Path(scratch) / "model.onnx"
        excluded = _export_fp32(graph, fp32, tuple(graph_path(layer) for layer in quant.keep_float))
        quantize_qdq(fp32, int8, graph.input_name, inputs, excluded)
        model = onnx.load(str(int8))
        integer_islands(model)  # hard-swish, hard-sigmoid, SE means: int8 kernels in ONNX Runtime
        compact(model)  # no all-zero weight zero points, short tensor names: a smaller file
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, graph.metadata.to_json()
        onnx.checker.check_model(model)
        onnx.save(model, str(int8))
        graph.gate = gate_int8_file(int8, net, quant, graph.metadata.input_size)
        os.replace(int8, files[0])


def _export_fp32(graph, path: Path, keep_float: tuple[str, ...]) -> list[str]:
    """Export and slim the float graph; return the names of the nodes to leave float: those inside
    ``keep_float`` and the shallow (RGB stem) convolutions."""
    program = torch.onnx.export(
        graph.module, (graph.sample,), dynamo=True, opset_version=OPSET,
        input_names=[graph.input_name], output_names=list(graph.output_names), verbose=False,
    )
    excluded = [node.name for node in program.model_proto.graph.node if _scope_in(node, keep_float)]
    model = onnxslim.slim(program.model_proto)
    pool_as_global(model)  # squeeze-excitation means: QLinearGlobalAveragePool in ONNX Runtime
    onnx.save(model, str(path))
    return excluded + slow_int8_convs(model) + attention_ops(model)


def attention_ops(model: onnx.ModelProto) -> list[str]:
    """Names of the attention cores' nodes, left float: every Softmax and every MatMul of two
    activations (queries x keys, weights x values; a MatMul with a weight stays int8).

    ONNX Runtime 1.32's QLinearSoftmax and QLinearMatMul are slower than its float kernels.
    SegFormer-B0 at 512x512 (1 thread, one round-robin run): QLinearSoftmax 75 ms against 8.5 ms
    for the float Softmax, QLinearMatMul 33 ms against 21 ms; the int8 file took 0.94x of fp32,
    0.69x with these float. Softmax alone float: 0.99x (its Q/DQ cost what it saved). At 128x256,
    where attention is a small share, the same change is neutral (SegFormer-B0 0.69x -> 0.72x,
    Mobile-Former-151M 1.19x -> 1.21x, within the noise)."""
    weights = {t.name for t in model.graph.initializer}
    return [node.name for node in model.graph.node
            if node.op_type == "Softmax" or (node.op_type == "MatMul" and not weights & set(node.input))]


# Convolutions with at most this many input channels (the RGB stem) stay float: ONNX Runtime's
# int8 conv is slower than its float one there. LR-ASPP-S 512x512, 1 thread: the int8 stem
# (3 -> 16 channels, 3x3, stride 2) took 18% of the int8 file's time, 2x its float (NCHWc) time;
# with it float the file ran at 0.85x of fp32 instead of 1.08x (same run). 432 weights.
SHALLOW_CHANNELS = 4


def slow_int8_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes ONNX Runtime runs slower in int8 than in float: the (non-grouped)
    ones whose weights take at most SHALLOW_CHANNELS channels, and grouped convolutions other than
    plain depthwise ones (one input and one output channel per group). ORT 1.32's int8 depthwise
    kernel takes only those: Mobile-Former's 3x3 depthwise convolutions that also expand the
    channels (2, 4 or 6 outputs per group) ran its slow generic path (Mobile-Former-151M at
    128x256, 1 thread: one 12 -> 24-channel one at 64x128 took 4.4-6.6 ms in int8; all convs of
    the int8 file 12.2 ms against 2.5 ms for every Conv of the fp32 file;
    benchmarks/results/int8_profile.md). ONNX Runtime's own WeightBiasQuantization pass would
    quantize such a conv back when its neighbours are int8; edgeseg's runtime turns the pass off
    for edgeseg int8 files (edgeseg.runtime.onnx.REQUANTIZER)."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = shapes.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if not weight or len(weight) != 4:
            continue
        depthwise = weight[1] == 1 and weight[0] == group
        if (group == 1 and weight[1] <= SHALLOW_CHANNELS) or (group > 1 and not depthwise):
            names.append(node.name)
    return names


def _scope_in(node, layers: tuple[str, ...]) -> bool:
    scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
    if not scopes or not layers:
        return False
    return any(in_layers(scope, layers) for scope in re.findall(r"'([^']*)'", scopes))


def quantize_qdq(src: Path, dest: Path, input_name: str, inputs: list[np.ndarray], excluded: list[str]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([{input_name: x} for x in inputs])

        def get_next(self):
            return next(self._batches, None)

    quantize_static(
        str(src), str(dest), _Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,  # one scale per output channel: depthwise convs lose too much per-tensor
        # uint8 activations, int8 weights (U8S8): the pair ONNX Runtime's x86 int8 kernels are built
        # for (VPMADDUBSW / VNNI take u8 x s8). Measured, LR-ASPP-L 128x256, 1 thread, same run:
        # int8 activations 1.44x the fp32 latency, uint8 0.76x. Same 256-level asymmetric grid, so
        # the accuracy and the QAT mirror (PT2E asymmetric activations) are unchanged.
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        # Asymmetric activations use the whole int8 range after ReLU/hard-swish; symmetric weights
        # keep the conv kernels' zero point at 0 (what onnxruntime's int8 CPU kernels expect).
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )


# --- Integer islands -------------------------------------------------------------------------
# quantize_static leaves MobileNetV3's hard-swish, hard-sigmoid and squeeze-excitation mean as
# DequantizeLinear -> float op -> QuantizeLinear: ONNX Runtime has no int8 kernel for HardSwish,
# HardSigmoid or ReduceMean. The rewrites below give each a form that ONNX Runtime's QDQ
# transformer fuses into an int8 kernel (QLinearAdd, QLinearMul, QLinearGlobalAveragePool).
# Bilinear Resize stays float: ONNX Runtime keeps the Q/DQ around a linear Resize even with equal
# scales (it drops them for nearest only), and its uint8 linear Resize ran 4x slower than the
# float one (19 x 64x64 -> 512x512, 1 thread: 92 vs 24 ms).


def pool_as_global(model: onnx.ModelProto) -> int:
    """Float rewrite: ``ReduceMean`` over H and W of a 4-D tensor (keepdims) -> ``GlobalAveragePool``,
    the same values, which ONNX Runtime runs in int8 (QLinearGlobalAveragePool) and ReduceMean not.
    Returns how many were rewritten."""
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim)
             for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)
             if v.type.tensor_type.HasField("shape")}
    inits = {t.name: t for t in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        if node.op_type != "ReduceMean" or node.domain not in ("", "ai.onnx") or ranks.get(node.input[0]) != 4:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1] in inits:
            axes = onnx.numpy_helper.to_array(inits[node.input[1]]).tolist()
        if attrs.get("keepdims", 1) != 1 or axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            continue
        node.op_type = "GlobalAveragePool"
        del node.input[1:]
        del node.attribute[:]
        count += 1
    return count


def integer_islands(model: onnx.ModelProto) -> dict[str, int]:
    """QDQ rewrite of the float islands quantize_static leaves, in place; returns what it changed.

    - ``HardSigmoid(x) = clip(alpha * x + beta, 0, 1)``: ``Add(x, beta / alpha)`` quantized with
      scale ``1 / (255 alpha)`` and zero point 0 (the uint8 range then *is* the clip), read back
      with scale ``1 / 255``: the hard-sigmoid on a 1/255 grid, from an int8 QLinearAdd. A gate
      read only through a requantization (the squeeze-excitation hard-sigmoid before its
      QuantizeLinear) is read directly from the gate's uint8 tensor.
    - ``HardSwish(x) = x * HardSigmoid(x)`` (alpha 1/6, beta 1/2): the same gate, then an int8
      QLinearMul with ``x`` into the HardSwish's own output quantization.
    - A graph output computed by a float (linear) Resize, quantized and dequantized again (the
      final logits upsample): the QuantizeLinear/DequantizeLinear pair is dropped; it only
      rounds, at full resolution (two passes over the largest tensor of the graph).
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    counts = {"hard_swish": 0, "hard_sigmoid": 0, "float_output": 0}
    inits: list[onnx.TensorProto] = []
    replaced: dict[int, list] = {}  # id(node) -> the nodes that take its place
    removed: set[int] = set()

    def is_op(name: str, op: str) -> bool:
        node = producer.get(name)
        return node is not None and node.op_type == op

    def const(name: str, value, dtype) -> str:
        inits.append(onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    zero = const("edgeseg_uint8_zero", 0, np.uint8)
    unit = const("edgeseg_gate_scale", 1.0 / 255.0, np.float32)
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] in outputs and is_op(node.input[0], "QuantizeLinear"):
            quant = producer[node.input[0]]
            source = producer.get(quant.input[0])
            if (source is not None and _float_resize(source) and len(consumers.get(quant.input[0], [])) == 1
                    and len(consumers.get(quant.output[0], [])) == 1):
                source.output[:] = [node.output[0] if o == quant.input[0] else o for o in source.output]
                removed.update((id(quant), id(node)))
                counts["float_output"] += 1
            continue
        if node.op_type not in ("HardSwish", "HardSigmoid") or not is_op(node.input[0], "DequantizeLinear"):
            continue
        after = consumers.get(node.output[0], [])
        if node.output[0] in outputs or not after or any(c.op_type != "QuantizeLinear" for c in after):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        alpha, beta = (1.0 / 6.0, 0.5) if node.op_type == "HardSwish" else (attrs.get("alpha", 0.2), attrs.get("beta", 0.5))
        base = f"{node.name or node.output[0]}_int8"
        offset = beta / alpha  # 128 * (offset / 128) is exact in float32
        gate_q = f"{base}_gate_q"
        new = [
            onnx.helper.make_node("DequantizeLinear", [const(f"{base}_offset_q", 128, np.uint8),
                                                       const(f"{base}_offset_scale", offset / 128.0, np.float32), zero],
                                  [f"{base}_offset"], name=f"{base}_offset_dq"),
            onnx.helper.make_node("Add", [node.input[0], f"{base}_offset"], [f"{base}_shifted"], name=f"{base}_add"),
            onnx.helper.make_node("QuantizeLinear", [f"{base}_shifted", const(f"{base}_shift_scale", 1.0 / (255.0 * alpha),
                                                                             np.float32), zero],
                                  [gate_q], name=gate_q),
        ]
        reads = [d for q in after for d in consumers.get(q.output[0], [])]
        if node.op_type == "HardSwish":
            counts["hard_swish"] += 1
            new += [onnx.helper.make_node("DequantizeLinear", [gate_q, unit, zero], [f"{base}_gate"], name=f"{base}_gate_dq"),
                    onnx.helper.make_node("Mul", [node.input[0], f"{base}_gate"], list(node.output), name=f"{base}_mul")]
        elif reads and all(d.op_type == "DequantizeLinear" for d in reads) and not any(q.output[0] in outputs for q in after):
            counts["hard_sigmoid"] += 1  # read the gate's uint8 directly: no requantization
            removed.update(id(q) for q in after)
            for dq in reads:
                dq.input[:] = [gate_q, unit, zero]
        else:
            counts["hard_sigmoid"] += 1
            new.append(onnx.helper.make_node("DequantizeLinear", [gate_q, unit, zero], list(node.output), name=f"{base}_gate_dq"))
        replaced[id(node)] = new
    nodes = [n for node in graph.node if id(node) not in removed for n in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    return counts


def _float_resize(node) -> bool:
    """A Resize that ONNX Runtime runs in float whatever its Q/DQ (every mode but nearest)."""
    mode = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "mode"), b"nearest")
    return node.op_type == "Resize" and mode != b"nearest"


def compact(model: onnx.ModelProto) -> dict[str, int]:
    """Smaller int8 file, same graph, in place: drop the all-zero zero points of the int8 weights'
    and int32 biases' DequantizeLinear (an absent zero point is 0 of the input's type), and give
    the intermediate tensors short names (quantize_static's "<name>_DequantizeLinear_Output"
    names and per-channel zero points are ~7% of a small model's int8 file: LR-ASPP-S 31% of
    the fp32 size with them, under 30% without). Graph inputs and outputs keep their names.

    Only the zero points read by convolutions alone are dropped: ONNX Runtime 1.32 fuses a QDQ
    Gemm or MatMul into its int8 QGemm only when the weight's DequantizeLinear names its zero
    point (without it, Mobile-Former-151M's 141 token Linear layers ran float Gemm with their
    weights dequantized on every call: int8 1.54x of fp32 at 128x256, 1.29x with QGemm)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    dropped = 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3 or node.input[0] not in inits:
            continue
        if inits[node.input[0]].data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.INT32):
            continue
        if readers.get(node.output[0]) != {"Conv"}:
            continue
        zero = inits.get(node.input[2])
        if zero is not None and not np.any(onnx.numpy_helper.to_array(zero)):
            del node.input[2:]
            dropped += 1
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    fixed = {v.name for v in (*graph.input, *graph.output)}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in fixed:
            return name
        return names.setdefault(name, f"t{len(names):x}")

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for node in graph.node:
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del graph.value_info[:]
    return {"zero_points_dropped": dropped, "renamed": len(names)}
